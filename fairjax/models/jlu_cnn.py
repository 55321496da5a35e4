"""Seed 004's multi-task CNN for joint learning and unlearning (JLU) of gender in age classification.

What the seed fixes: a 96x96x3 input, a 128-d representation theta_repr shared by two softmax
classifiers on top of it, theta_age over 14 age bins of width 4 covering 16-72 and theta_gen over
(male, female). JLU alternates min L_gen with min L_age + alpha * L_confusion, where L_confusion is
the cross-entropy of the gender softmax against (0.5, 0.5): a multiclass head's soft targets
(``heads.multitask_loss`` with ``labels={'gender': full((B, 2), 0.5)}``). The gender and age
classifiers read the same theta_repr, the model's ``'embedding'``, which is what the seed's t-SNE
plots and any leakage probe look at.

What it does not: its trunk. The layer diagram (its Fig. 6) did not survive in the seed text, so the
trunk here is an assumption, the plainest one that meets the stated sizes: four stages of 3x3 'same'
convolution + ReLU + 2x2 max pool (32, 64, 128, 256 filters; 96 -> 6), flatten, Dense(128, ReLU) =
theta_repr, no dropout. It is a ``KerasCNN``, so every part is overridable by name.
"""

from fairjax.models.heads import HeadSpec, binned_head
from fairjax.models.keras_cnns import KerasCNN
from fairjax.models.registry import register

AGE_LOW, AGE_HIGH, AGE_BIN_WIDTH = 16, 72, 4  # 14 bins


@register("jlu_cnn")
def jlu_cnn(**overrides) -> KerasCNN:
  """Seed 004 §3.2: 96x96x3 -> 128-d theta_repr -> age (14 bins, 16-72, width 4) and gender (2-way)."""
  return KerasCNN(**{
      "heads": (binned_head("age", AGE_LOW, AGE_HIGH, AGE_BIN_WIDTH),
                HeadSpec("gender", "multiclass", num_outputs=2)),
      "input_shape": (96, 96, 3),
      "convs": ((32, True), (64, True), (128, True), (256, True)),
      "padding": "SAME",
      "dense": (128,),
      **overrides})
