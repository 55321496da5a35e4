"""The one record format every face data set in fairjax is read into.

Sources (UTKFace, FairFace, CelebA, the synthetic faces) differ in how they store labels; the rest of the
code base (treatments, the input pipeline, the audits) sees only this: an example is a dict with

  image      uint8 [H, W, 3] (RGB; grayscale sources are expanded to three channels on read)
  age        int32, years (-1 where the source has no age)
  gender     int32, GENDERS index (0 male, 1 female; -1 unknown)
  race       int32, RACES index (-1 unknown)
  file_name  str, the source file the example came from (for skip reports and audits)

and a data set's labels, without images, are a pandas DataFrame with the columns of METADATA_COLUMNS.
UTKFace's own codes are kept as the canonical ones (gender 0 male / 1 female; race 0 White, 1 Black,
2 Asian, 3 Indian, 4 Others) so that a UTKFace file name and its record agree.
"""

GENDERS = ("male", "female")
RACES = ("White", "Black", "Asian", "Indian", "Others")
METADATA_COLUMNS = ("file_name", "age", "gender", "race")
UNKNOWN = -1
