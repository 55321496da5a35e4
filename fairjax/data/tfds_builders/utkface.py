"""TFDS builder ``utkface``: the manually downloaded UTKFace archive (or folder) as a TFDS data set.

Examples are the direct reader's records (``fairjax.data.utkface``), stored as lossless PNG: TFDS
decodes JPEG with TensorFlow's fast integer IDCT, which differs from PIL's by up to 4 levels per pixel,
so passing the original JPEG bytes through would give different pixels here and in the direct reader.
The price is size (about 51 kB an image at 200x200, 1.2 GB for the set, against 106 MB of JPEG). PIL
writes the PNGs at zlib level 1: 3 ms an image, where TFDS's own encoder takes 28 ms and level 6 13 ms
for 12 % less space.

Skipped files (names without the race field, unreadable images) are logged and kept in the prepared
set's ``metadata.json`` as ``info.metadata["skipped"]``, a list of {"file", "reason"}.
"""

import io

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from fairjax.data import schema
from fairjax.data import utkface as utkface_lib

_CITATION = """\
@inproceedings{zhifei2017cvpr,
  title={Age Progression/Regression by Conditional Adversarial Autoencoder},
  author={Zhang, Zhifei and Song, Yang and Qi, Hairong},
  booktitle={IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2017}
}"""


class UTKFace(tfds.core.GeneratorBasedBuilder):
  """UTKFace aligned and cropped faces, labelled with age, gender and race from their file names."""

  name = "utkface"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Aligned & cropped faces; labels from file names; malformed files skipped."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
  Download the "Aligned & Cropped Faces" archive {utkface_lib.ARCHIVE_NAME} from
  https://susanqq.github.io/UTKFace/ (non-commercial research use only) and place it in `manual_dir`
  as `manual_dir/{utkface_lib.ARCHIVE_NAME}`, or extract it there so that the images are in
  `manual_dir/{utkface_lib.FOLDER_NAME}/AGE_GENDER_RACE_DATETIME.jpg.chip.jpg`.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=("UTKFace: over 20,000 face images with age (0-116), gender and race labels, "
                     "aligned and cropped to 200x200. Non-commercial research use only."),
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
            "age": np.int32,
            "gender": tfds.features.ClassLabel(names=schema.GENDERS),
            "race": tfds.features.ClassLabel(names=schema.RACES),
            "file_name": tfds.features.Text(),
        }),
        homepage="https://susanqq.github.io/UTKFace/",
        citation=_CITATION,
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    # One split: the experiments draw their own train/validation/test splits from it by seed.
    return {"train": self._generate_examples(utkface_lib.find_source(dl_manager.manual_dir))}

  def _generate_examples(self, source: str):
    reader = utkface_lib.UTKFaceReader(source)
    for record in reader:
      yield record["file_name"], dict(record, image=png_bytes(record["image"]))
    self.info.metadata["skipped"] = reader.skipped


def png_bytes(image: np.ndarray) -> bytes:
  """``image`` (uint8 [H, W, 3]) as PNG, fast; the Image feature stores the bytes as they are."""
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, "PNG", compress_level=1)
  return buffer.getvalue()
