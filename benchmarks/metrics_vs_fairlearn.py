r"""fairjax group metrics against fairlearn's MetricFrame, on the same data in the same run.

  python benchmarks/metrics_vs_fairlearn.py [--rows=1000000] [--groups=10] [--n_boot=1000]

The work: binary predictions on N rows in G groups; per-group count, selection rate, TPR, FPR, TNR,
FNR, precision, accuracy and F1 (fairjax computes NPV, FDR, FOR and treatment equality besides), and
the between-group differences and ratios; then the same with a bootstrap of n_boot resamples for 95 %
intervals. fairjax is timed end to end from numpy arrays (transfer, counting, figures, back to numpy),
after one warm-up call whose compile time is printed separately.

fairlearn's bootstrap recomputes the whole MetricFrame per resample, so 1,000 resamples of 1M rows
take long; by default it runs --fairlearn_boot resamples and its time is scaled to n_boot (printed as
such). Pass --fairlearn_boot equal to --n_boot to time it in full.
"""

import time

from absl import flags
import jax
import numpy as np

from fairjax import cli
from fairjax.metrics import confusion
from fairjax.metrics import figures

_ROWS = flags.DEFINE_integer("rows", 1_000_000, "Rows of predictions.")
_GROUPS = flags.DEFINE_integer("groups", 10, "Number of groups.")
_N_BOOT = flags.DEFINE_integer("n_boot", 1000, "Bootstrap resamples.")
_FAIRLEARN_BOOT = flags.DEFINE_integer("fairlearn_boot", 5, "Resamples that fairlearn really runs.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed repeats of each fairjax call (median reported).")


def _data(rows, groups, seed=0):
  rng = np.random.default_rng(seed)
  g = rng.integers(0, groups, rows).astype(np.int32)
  y = rng.integers(0, 2, rows).astype(np.int32)
  p = np.where(rng.random(rows) < 0.6 + 0.3 * g / groups, y, 1 - y).astype(np.int32)
  return y, p, g


def _median_seconds(fn, repeats):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def fairjax_plain(y, p, g, groups):
  counts = confusion.confusion_counts(y, p, g, num_groups=groups, num_classes=2)
  return figures.compute_classification(counts, 0)


def fairjax_bootstrap(y, p, g, groups, n_boot):
  counts = confusion.confusion_counts(y, p, g, num_groups=groups, num_classes=2)
  return figures.compute_classification(counts, 0, num_resamples=n_boot)


def fairlearn_frame(y, p, g, n_boot=None):
  import fairlearn.metrics as flm  # pylint: disable=g-import-not-at-top
  from sklearn import metrics as skm  # pylint: disable=g-import-not-at-top
  frame = flm.MetricFrame(
      metrics={"count": flm.count, "selection_rate": flm.selection_rate, "tpr": flm.true_positive_rate,
               "fpr": flm.false_positive_rate, "tnr": flm.true_negative_rate, "fnr": flm.false_negative_rate,
               "precision": skm.precision_score, "accuracy": skm.accuracy_score, "f1": skm.f1_score},
      y_true=y, y_pred=p, sensitive_features=g, n_boot=n_boot,
      ci_quantiles=[0.025, 0.975] if n_boot else None, random_state=0 if n_boot else None)
  return frame.difference(), frame.ratio()


def main(argv):
  del argv
  rows, groups, n_boot = _ROWS.value, _GROUPS.value, _N_BOOT.value
  y, p, g = _data(rows, groups)
  print(f"{rows:,} rows, {groups} groups, binary; jax {jax.__version__} on {jax.devices()[0].platform}")

  start = time.perf_counter()
  fairjax_plain(y, p, g, groups)
  compile_plain = time.perf_counter() - start
  ours_plain = _median_seconds(lambda: fairjax_plain(y, p, g, groups), _REPEATS.value)
  start = time.perf_counter()
  fairjax_bootstrap(y, p, g, groups, n_boot)
  compile_boot = time.perf_counter() - start
  ours_boot = _median_seconds(lambda: fairjax_bootstrap(y, p, g, groups, n_boot), _REPEATS.value)

  theirs_plain = _median_seconds(lambda: fairlearn_frame(y, p, g), 1)
  fl_boot = max(_FAIRLEARN_BOOT.value, 1)
  theirs_boot_run = _median_seconds(lambda: fairlearn_frame(y, p, g, n_boot=fl_boot), 1)
  theirs_boot = theirs_boot_run * n_boot / fl_boot
  scaled = "" if fl_boot == n_boot else f" (ran {fl_boot} resamples in {theirs_boot_run:.2f} s, scaled)"

  print(f"\n{'':28s}{'fairjax':>12s}{'fairlearn':>14s}{'ratio':>10s}")
  print(f"{'plain evaluation':28s}{ours_plain * 1e3:10.2f}ms{theirs_plain:12.2f} s{theirs_plain / ours_plain:9.0f}x")
  print(f"{f'bootstrap, {n_boot} resamples':28s}{ours_boot * 1e3:10.2f}ms{theirs_boot:12.1f} s"
        f"{theirs_boot / ours_boot:9.0f}x{scaled}")
  print(f"\nfairjax first-call compile: plain {compile_plain:.2f} s, bootstrap {compile_boot:.2f} s "
        f"(once per process and shape)")
  print(f"goals: plain >= 100x: {'met' if theirs_plain / ours_plain >= 100 else 'NOT met'}; "
        f"bootstrap >= 1000x: {'met' if theirs_boot / ours_boot >= 1000 else 'NOT met'}")


if __name__ == "__main__":
  cli.run(main)
