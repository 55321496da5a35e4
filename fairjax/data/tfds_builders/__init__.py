"""TFDS builders for the manually downloaded face sets (``utkface``, ``fairface``).

Importing this package registers them, so ``tfds.builder('utkface', data_dir=...)`` works after
``import fairjax.data.tfds_builders``. They read with the same code as the direct, TensorFlow-free
readers (``fairjax.data.utkface``, ``fairjax.data.fairface``) and so hold exactly their examples.
"""

from fairjax.data.tfds_builders import fairface, utkface
