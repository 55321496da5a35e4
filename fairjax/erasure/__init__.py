"""Concept erasure: embeddings from which a protected attribute can no longer be read linearly.

A representation can be made blind to an attribute after training, without touching the model: fit an
eraser on one split's embeddings and attribute labels, then apply it to any other split's embeddings
before whatever reads them (a probe, a downstream classifier, retrieval). Two methods, one interface:

  eraser = erasure.fit(embeddings, attribute, method="leace")  # or "inlp", with their options
  erased = eraser(other_embeddings)                            # [M, D] float32, jit-able
  eraser.save(path); erasure.load(path)

* ``leace`` (``leace.py``): Belrose et al.'s closed form, the least change that makes every class of the
  attribute have the same mean embedding, so that no linear classifier beats the constant one. A port of
  EleutherAI's ``concept_erasure`` with its defaults.
* ``inlp`` (``inlp.py``): Ravfogel et al.'s iterative nullspace projection, the older baseline.

Neither erases what is encoded nonlinearly (an MLP may still read it): ``probes.linear_and_mlp_leakage``
measures both, fitted on one split and scored on another.
"""

from fairjax.erasure.eraser import METHODS, Eraser, fit, load
from fairjax.erasure.probes import linear_and_mlp_leakage

__all__ = ["METHODS", "Eraser", "fit", "linear_and_mlp_leakage", "load"]
