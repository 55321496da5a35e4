"""The optional abilities a registered model may have, as protocols a reader and a type checker can see.

Every registered model is a Flax module whose ``__call__(images, train)`` returns ``embedding`` and one
output per head (``fairjax.models.heads``). Beyond that, a model may offer what the training run asks
of some models only; the run checks for each with ``isinstance(model, Protocol)`` (the protocols are
runtime-checkable), never by probing attribute names:

  KerasL2            Keras ``kernel_regularizer=l2(f)`` factors, added to the loss as Keras adds them
  PretrainedStart    the variables to start from (a checkpoint), instead of a fresh initialisation
  ChecksData         a check that the configured data suit the model (a checkpoint's normalisation)
  ReadsCaptions      a text tower: the pipeline's caption stage, and image-text embeddings
  Exports            writes the trained model in a format other tools read (a Hugging Face folder)
"""

from typing import Any, Callable, Optional, Protocol, Sequence, runtime_checkable


@runtime_checkable
class KerasL2(Protocol):

  def l2_factors(self) -> dict[str, float]:
    """``layer name -> factor`` of the layers whose kernels Keras regularised."""


@runtime_checkable
class PretrainedStart(Protocol):

  def pretrained_variables(self) -> Optional[dict]:
    """The variables to start from, or None for a fresh initialisation."""


@runtime_checkable
class ChecksData(Protocol):

  def check_data(self, data_config) -> None:
    """Raises ``ValueError`` when ``data_config`` does not suit the model."""


@runtime_checkable
class ReadsCaptions(Protocol):

  def text_inputs(self) -> Callable[[dict, int], dict]:
    """The input pipeline's text stage: a record's caption as token ids."""

  def contrastive(self, images, input_ids, attention_mask=None, with_heads: bool = False) -> dict:
    """Image and caption embeddings and the logit scale (and the heads' outputs with ``with_heads``)."""


@runtime_checkable
class Exports(Protocol):

  def export(self, params: dict, directory: str, image_mean: Sequence[float], image_std: Sequence[float]) -> str:
    """Writes the model with ``params`` to ``directory``; returns the folder written."""


def has(model: Any, protocol: type) -> bool:
  """Whether ``model`` offers ``protocol``'s ability."""
  return isinstance(model, protocol)
