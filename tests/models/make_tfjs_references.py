r"""Writes the TF.js reference outputs that tests/models/test_tfjs.py checks the TF.js importer against.

  mkdir -p ~/.cache/fairjax/tfjs-oracle && (cd ~/.cache/fairjax/tfjs-oracle &&
      npm install --no-audit --no-fund @tensorflow/tfjs@4.22.0)
  NODE_PATH=~/.cache/fairjax/tfjs-oracle/node_modules python tests/models/make_tfjs_references.py \
      [--models=gear,age] [--cache=~/.cache/fairjax/human-models-3.0.4]

Run by hand (the tests never run Node). For each model of ``tfjs_models.REFERENCE_MODELS`` it runs
``tfjs_reference.js`` (TF.js 4.22's pure-JS CPU backend; not tfjs-node) on the recipe's images and
writes ``tests/models/data/tfjs_<name>_reference.npz``: the recipe's parameters (``shape``, ``low``,
``high``, ``recipe``), ``tfjs_version``, ``package`` (the models' npm package and version) and one
``output/<name>`` array per output node of the graph (TF.js's ``GraphModel.outputs``).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tfjs_models  # pylint: disable=g-import-not-at-top,wrong-import-position

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tfjs_reference.js")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--models", default=",".join(tfjs_models.REFERENCE_MODELS))
  parser.add_argument("--cache", default=f"~/.cache/fairjax/human-models-{tfjs_models.VERSION}")
  args = parser.parse_args()
  names = args.models.split(",")
  folder = tfjs_models.fetch(os.path.expanduser(args.cache), names)
  os.makedirs(tfjs_models.DATA, exist_ok=True)
  for name in names:
    batch, low, high = tfjs_models.REFERENCE_MODELS[name]
    with tempfile.TemporaryDirectory() as scratch:
      out = os.path.join(scratch, "outputs.json")
      subprocess.run(["node", SCRIPT, os.path.join(folder, f"{name}.json"), out, str(batch), str(low),
                      str(high)], check=True, stdout=subprocess.DEVNULL)
      with open(out) as f:
        result = json.load(f)
    outputs = {f"output/{key}": np.asarray(value["data"], np.float32).reshape(value["shape"])
               for key, value in result["outputs"].items()}
    with open(os.path.join(folder, f"{name}.json")) as f:
      input_shape = [int(d["size"]) for d in next(
          n for n in json.load(f)["modelTopology"]["node"] if n["op"] == "Placeholder")["attr"]["shape"]
                     ["shape"]["dim"]]
    shape = [batch] + input_shape[1:]
    path = tfjs_models.reference_path(name)
    np.savez_compressed(path, shape=np.asarray(shape), low=low, high=high, recipe=tfjs_models.RECIPE,
                        tfjs_version=result["version"],
                        package=f"{tfjs_models.PACKAGE}@{tfjs_models.VERSION}", **outputs)
    print(f"{path}: {os.path.getsize(path)} bytes, outputs "
          f"{ {k[len('output/'):]: v.shape for k, v in outputs.items()} }")


if __name__ == "__main__":
  main()
