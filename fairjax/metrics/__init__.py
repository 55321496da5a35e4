"""Group-fairness metrics in pure JAX.

Everything starts from per-group confusion counts (``confusion_counts``), which add across batches and
devices; rates, disparities, bootstrap intervals and threshold sweeps are jit-able functions of them,
and ``equalized_odds_frontier`` bounds what group thresholds can make of a model's scores.
``classification_report`` / ``regression_report`` turn them into the tables and summaries that the
audit command and the training loop write.
"""

from fairjax.metrics.bootstrap import percentile_interval, resample_counts, resample_rows
from fairjax.metrics.confusion import (CLASS_METRICS, RATES, class_rates, confusion_counts,
                                       group_summary, one_vs_rest, overall_summary, safe_div)
from fairjax.metrics.disparity import (difference, disparate_impact, disparities,
                                       pairwise_disparate_impact, ratio, treatment_equality)
from fairjax.metrics.figures import classification_figures, regression_figures
from fairjax.metrics.frontier import equalized_odds_frontier
from fairjax.metrics.group_report import (DEFAULT_THRESHOLDS, FairnessWarning, GroupReport,
                                          classification_report, group_labels, regression_report)
from fairjax.metrics.groups import encode_columns, intersect, intersect_names
from fairjax.metrics.regression import regression_metrics, regression_sums
from fairjax.metrics.thresholds import best_threshold, threshold_counts
