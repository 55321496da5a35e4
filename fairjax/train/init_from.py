"""``config.model.init_from``: a run that starts from someone's weights instead of a fresh initialisation.

Transfer learning is how seed 001 works (VGG-Face's weights, fc6 / fc7 and a new softmax retrained) and
how seed 002's models start (ImageNet); a fine-tuned model is compared with the one it came from. The
path names one of:

  a fairjax workdir      the checkpoint its report describes (the selection rule's best, else the last):
                         every model variable whose name and shape match loads; a head the source lacks,
                         or has with another shape, keeps its initialisation (noted), and any other
                         difference is an error
  a checkpoint file      Keras ``.h5``, a torchvision-named ``.pt`` state dict, or a TF.js graph's
                         ``model.json``, through ``fairjax.models.convert.load_weights``

Only the model's variables load: the optimiser, the objective's own parameters (an adversary) and the
data position start fresh, since this is a new run and not a resumed one (resuming is the workdir's
own checkpoints' business). The notes (what stayed fresh) go to the run's log and report.
"""

import json
import os
from typing import Any, Mapping

from etils import epath
from flax import traverse_util
import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from fairjax import paths
from fairjax.models import convert
from fairjax.train import checkpoint as checkpoint_lib


def _reported_step(workdir: epath.Path, directory: epath.Path) -> int:
  """The step the source run reports: its selection rule's best kept checkpoint, else its last."""
  config = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))
  selection = config.get("selection", {})
  rule = None
  if selection.get("metric"):  # as loop.selection_rule reads the run's config
    bound_metric = selection.get("bound_metric", "")
    rule = checkpoint_lib.SelectionRule(selection["metric"], selection.get("mode", "min"),
                                        {bound_metric: selection.get("bound", 0.1)} if bound_metric else {})
  checkpointer = checkpoint_lib.Checkpointer(str(directory), every_steps=1, selection=rule, async_save=False)
  try:
    step = (checkpointer.best_step() if rule is not None else None) or checkpointer.latest_step()
  finally:
    checkpointer.close()
  if step is None:
    raise ValueError(f"model.init_from={workdir}: the run holds no checkpoint")
  return step


def _workdir_variables(workdir: epath.Path) -> tuple[dict, int]:
  """The model variables ({'params': ..., other collections}) of the source run's reported checkpoint."""
  directory = workdir / "checkpoints"
  step = _reported_step(workdir, directory)
  with ocp.CheckpointManager(directory) as manager:
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  state = restored["state"]
  return {"params": state["params"]["model"], **dict(state.get("model_state") or {})}, step


def _overlay_matching(variables: Mapping[str, Any], source: Mapping[str, Any], heads: set, where: str
                      ) -> tuple[dict, list[str]]:
  flat = traverse_util.flatten_dict(dict(variables))
  theirs = traverse_util.flatten_dict(dict(source))
  fresh, notes = set(), []
  for path, value in flat.items():
    head = path[1] if len(path) > 1 and path[1] in heads else None
    other = theirs.get(path)
    if other is not None and tuple(np.shape(other)) == tuple(value.shape):
      flat[path] = jnp.asarray(other, value.dtype)
    elif head is not None:
      fresh.add(head)
    elif other is None:
      raise ValueError(f"model.init_from={where}: the checkpoint lacks {'/'.join(map(str, path))}; is it "
                       "the same model?")
    else:
      raise ValueError(f"model.init_from={where}: {'/'.join(map(str, path))} has shape {np.shape(other)} "
                       f"there and {tuple(value.shape)} here")
  notes += [f"head {h!r} keeps its fresh initialisation (not in {where} with this shape)" for h in sorted(fresh)]
  return traverse_util.unflatten_dict(flat), notes


def load(init_from: str, model: nn.Module, variables: Mapping[str, Any]) -> tuple[dict, list[str]]:
  """``variables`` (the model's fresh ones) with the weights ``init_from`` names, and notes on what stayed
  fresh; ``init_from`` empty returns them unchanged."""
  if not init_from:
    return dict(variables), []
  path = paths.resolve(init_from)
  if not path.exists():
    raise ValueError(f"model.init_from={init_from}: no such file or folder")
  if path.is_dir():
    if not (path / "config.json").exists() or not (path / "checkpoints").exists():
      raise ValueError(f"model.init_from={init_from}: a folder must be a fairjax workdir (config.json and "
                       "checkpoints/); for a checkpoint file name the file")
    source, step = _workdir_variables(path)
    loaded, notes = _overlay_matching(variables, source, convert.head_modules(model), init_from)
    return loaded, [f"started from {init_from}, checkpoint of step {step}"] + notes
  if paths.is_remote(path):
    raise ValueError(f"model.init_from={init_from}: checkpoint files are read from local disk (a remote "
                     "fairjax workdir is fine)")
  loaded, notes = convert.load_weights(os.fspath(path), model, variables)
  return loaded, [f"started from {init_from}"] + notes
