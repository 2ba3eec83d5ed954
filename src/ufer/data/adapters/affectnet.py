"""AffectNet: the manual CSV lists (or ``--auto``) or the newer ``train_set/val_set`` npy layout.

CSV layout: ``Manually_Annotated_file_lists/{training,validation}.csv`` with columns
``subDirectory_filePath, face_x, face_y, face_width, face_height, facial_landmarks,
expression, valence, arousal`` (``validation.csv`` sometimes comes without its header row:
the first line is checked), images in ``Manually_Annotated_Images/<subDirectory_filePath>``.
``--auto`` takes the training rows from
``Automatically_Annotated_file_lists/automatically_annotated.csv`` (images in
``Automatically_Annotated_Images/``) instead; the test split stays the manual validation list.

npy layout (picked when ``ROOT/train_set`` exists): ``{train_set,val_set}/images/<id>.jpg``
with ``annotations/<id>_exp.npy``, ``_val.npy``, ``_aro.npy`` (0-d arrays).

Expression codes: 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger,
7 Contempt, and 8 None, 9 Uncertain, 10 Non-Face, which are dropped and counted.
Validation is the test split (the papers' protocol). Valence/arousal outside [-1, 1]
(-2 marks non-faces) are written as unknown and counted.
"""
from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ufer.data import schema
from ufer.data.adapters.common import (
    MALFORMED,
    UNKNOWN_LABEL,
    BadValue,
    Item,
    LabelMap,
    Ledger,
    Source,
    affect_value,
    class_list,
    csv_fields,
    data_lines,
    each_row,
    require,
    to_float,
    to_int,
)

NAME = "affectnet"
SUMMARY = ("AffectNet: Manually_Annotated_file_lists/*.csv (--auto: the automatic list) or "
           "the train_set/val_set npy layout; 7 or 8 classes")
ALIGNS = False
LABELS = {0: "Neutral", 1: "Happy", 2: "Sad", 3: "Surprise", 4: "Fear", 5: "Disgust",
          6: "Anger", 7: "Contempt"}
EXCLUDED = {8: "None", 9: "Uncertain", 10: "Non-Face"}
COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
           "facial_landmarks", "expression", "valence", "arousal")
MANUAL = ("Manually_Annotated_file_lists", "Manually_Annotated_Images")
AUTO = ("Automatically_Annotated_file_lists", "Automatically_Annotated_Images")
NPY_SPLITS = {"train_set": "train", "val_set": "test"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--classes", type=int, choices=(7, 8), default=7,
                        help="7 basic emotions, or 8 with contempt (default: 7)")
    parser.add_argument("--auto", action="store_true",
                        help="training rows from the automatically annotated list instead of "
                             "training.csv (the test split stays the manual validation list)")
    parser.add_argument("--crop", action="store_true",
                        help="crop every image to its face box (face_x, face_y, face_width, "
                             "face_height); CSV layout only")


def read(root: Path, ledger: Ledger, *, classes: int = 7, auto: bool = False,
         crop: bool = False) -> Source:
    """AffectNet as manifest items (see the module docstring).

    Args:
        root: the AffectNet folder (CSV lists + image folders, or ``train_set``/``val_set``).
        ledger: bookkeeping of kept / dropped / bad rows.
        classes: 7 or 8 (8 keeps contempt).
        auto: train on the automatically annotated list (CSV layout).
        crop: crop to the face box (CSV layout).
    """
    labels = LabelMap(LABELS, class_list(classes), EXCLUDED, dataset="AffectNet")
    if (root / "train_set").is_dir():
        if auto or crop:
            raise ValueError("--auto and --crop apply to the CSV layout; the train_set/val_set "
                             "layout has no automatic list and its images are face crops")
        return _npy_source(root, ledger, labels)
    training = (root / AUTO[0] / "automatically_annotated.csv" if auto
                else root / MANUAL[0] / "training.csv")
    lists = [(require(training, "AffectNet training list"), AUTO[1] if auto else MANUAL[1],
              "train"),
             (require(root / MANUAL[0] / "validation.csv", "AffectNet validation list"),
              MANUAL[1], "test")]
    items = (item for file, images, split in lists
             for item in _csv_items(file, root / images, split, ledger, labels, crop))
    notes = {"layout": "csv", "training_list": "automatic" if auto else "manual",
             "protocol": "validation list -> test split (the papers' protocol)",
             "va_mask": "valence/arousal outside [-1, 1] written as unknown",
             "face_box_crop": crop}
    return Source(classes=labels.classes, items=items, files=[f for f, _, _ in lists],
                  class_map=labels.describe(), notes=notes)


def _csv_items(file: Path, images: Path, split: str, ledger: Ledger, labels: LabelMap,
               crop: bool) -> Iterator[Item]:
    def parse(line: int, text: str) -> Item | None:
        fields = csv_fields(text)
        if len(fields) != len(COLUMNS):
            raise BadValue(MALFORMED, f"has {len(fields)} fields, expected {len(COLUMNS)} "
                           f"({', '.join(COLUMNS)})", value=text[:80])
        row = dict(zip(COLUMNS, fields))
        label = labels.index(to_int(row["expression"], "expression", UNKNOWN_LABEL), ledger,
                             column="expression")
        if label is None:
            return None
        values = {column: affect_value(row[column], column, ledger)
                  for column in (schema.VALENCE, schema.AROUSAL)}
        box = tuple(to_float(row[c], c) for c in COLUMNS[1:5]) if crop else None
        name = row[COLUMNS[0]]
        if not name:
            raise BadValue(MALFORMED, "is empty", column=COLUMNS[0], value=name)
        return Item(image=images / name, name=f"{images.name}/{name}", split=split, label=label,
                    file=file, line=line, values=values, box=box)

    rows = data_lines(file, lambda text: csv_fields(text)[0] == COLUMNS[0])
    return each_row(rows, file, ledger, parse)


def _npy_source(root: Path, ledger: Ledger, labels: LabelMap) -> Source:
    folders = [require(root / f, f"AffectNet {f} folder") for f in NPY_SPLITS]
    items = (item for folder in folders for item in _npy_items(folder, ledger, labels))
    notes = {"layout": "npy", "protocol": "val_set -> test split (the papers' protocol)",
             "va_mask": "valence/arousal outside [-1, 1] written as unknown"}
    return Source(classes=labels.classes, items=items, files=folders,
                  class_map=labels.describe(), notes=notes)


def _npy_items(folder: Path, ledger: Ledger, labels: LabelMap) -> Iterator[Item]:
    annotations = require(folder / "annotations", "AffectNet annotations folder")
    split = NPY_SPLITS[folder.name]
    for exp in sorted(annotations.glob("*_exp.npy"), key=_id_order):
        ident = exp.name[: -len("_exp.npy")]
        try:
            item = _npy_item(folder, ident, split, ledger, labels)
        except BadValue as bad:
            ledger.reject(bad, exp)
            continue
        if item is not None:
            yield item


def _id_order(path: Path) -> tuple[int, str]:
    ident = path.name.split("_")[0]
    return (int(ident), "") if ident.isdigit() else (-1, ident)


def _npy_item(folder: Path, ident: str, split: str, ledger: Ledger,
              labels: LabelMap) -> Item | None:
    annotations = folder / "annotations"
    code = to_int(_scalar(annotations / f"{ident}_exp.npy"), "expression", UNKNOWN_LABEL)
    label = labels.index(code, ledger, column="expression")
    if label is None:
        return None
    values = {column: affect_value(_scalar(annotations / f"{ident}_{suffix}.npy"), column, ledger)
              for column, suffix in ((schema.VALENCE, "val"), (schema.AROUSAL, "aro"))}
    return Item(image=folder / "images" / f"{ident}.jpg", name=f"{folder.name}/{ident}.jpg",
                split=split, label=label, file=annotations / f"{ident}_exp.npy", values=values)


def _scalar(path: Path) -> str:
    """The one value of a 0-d (or 1-element) .npy file, as text (they hold strings or numbers)."""
    if not path.is_file():
        raise BadValue(MALFORMED, f"annotation file is missing: {path}", value=path.name)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BadValue(MALFORMED, f"cannot be read as .npy ({path}: {exc})",
                       value=path.name) from None
    if array.size != 1:
        raise BadValue(MALFORMED, f"holds {array.size} values, expected one ({path})",
                       value=path.name)
    return str(array.reshape(()).item())
