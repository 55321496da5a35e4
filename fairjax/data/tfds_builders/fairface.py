"""TFDS builder ``fairface``: the manually downloaded FairFace release as a TFDS data set.

Examples are the direct reader's records (``fairjax.data.fairface``): labels mapped by name into the
schema, with the 7-way race (``race7``), the age bin (``age_bin``) and ``service_test`` kept. Images are
stored as lossless PNG of the PIL-decoded pixels, for the reasons given in ``tfds_builders/utkface.py``
(TensorFlow's JPEG decoder would give slightly different pixels from the direct reader's).

Skipped files (missing or unreadable images, repeated CSV rows) are logged and kept in the prepared
set's ``metadata.json`` as ``info.metadata["skipped"]``, a dict from split to a list of {"file", "reason"}.
"""

import numpy as np
import tensorflow_datasets as tfds

from fairjax.data import fairface as fairface_lib
from fairjax.data import schema
from fairjax.data.tfds_builders.utkface import png_bytes

_CITATION = """\
@inproceedings{karkkainenjoo2021fairface,
  title={FairFace: Face Attribute Dataset for Balanced Race, Gender, and Age for Bias Measurement and
         Mitigation},
  author={Karkkainen, Kimmo and Joo, Jungseock},
  booktitle={Proceedings of the IEEE/CVF Winter Conference on Applications of Computer Vision},
  pages={1548--1558},
  year={2021}
}"""


class FairFace(tfds.core.GeneratorBasedBuilder):
  """FairFace faces with age bin, gender and 7-way race, mapped into the fairjax schema."""

  name = "fairface"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Labels mapped by name into the schema; 7-way race and age bin kept."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
  Download from https://github.com/joojs/fairface the label files
  {fairface_lib.LABEL_FILES['train']} and {fairface_lib.LABEL_FILES['validation']} and the image zip
  fairface-img-margin025-trainval.zip, and place them in `manual_dir`. The zip may also be extracted
  there instead, giving `manual_dir/train/*.jpg` and `manual_dir/val/*.jpg`.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=("FairFace: 108,501 face images balanced over 7 race groups, labelled with race, "
                     "gender and age bin; here mapped into the fairjax schema (5 UTKFace races, age as "
                     "the bin's middle year) with the original labels kept."),
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
            "age": np.int32,
            "gender": tfds.features.ClassLabel(names=schema.GENDERS),
            "race": tfds.features.ClassLabel(names=schema.RACES),
            "file_name": tfds.features.Text(),
            "age_bin": tfds.features.ClassLabel(names=fairface_lib.AGE_BINS),
            "race7": tfds.features.ClassLabel(names=fairface_lib.RACES7),
            "service_test": np.bool_,
        }),
        homepage="https://github.com/joojs/fairface",
        citation=_CITATION,
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    self.info.metadata["skipped"] = {}
    root = dl_manager.manual_dir
    return {split: self._generate_examples(root, split) for split in fairface_lib.LABEL_FILES}

  def _generate_examples(self, root, split: str):
    reader = fairface_lib.FairFaceReader(root, split)
    for record in reader:
      yield record["file_name"], dict(record, image=png_bytes(record["image"]))
    self.info.metadata["skipped"][split] = reader.skipped
