"""Aff-Wild2 (ABAW): the combined multi-task files, or the per-task per-video files.

Combined (ABAW4 MTL): ``training_set_annotations.txt`` and ``validation_set_annotations.txt``
in ROOT, one header line, then ``<video>/<frame>.jpg, valence, arousal, expression`` and 12
AUs (AU1, 2, 4, 6, 7, 10, 12, 15, 23, 24, 25, 26); images in ``cropped_aligned/`` (112 x 112).

Per task (ABAW2/3/5): a folder ``EXPR_*_Challenge`` (e.g. ``EXPR_Classification_Challenge``)
with ``Train_Set/`` and ``Validation_Set/`` of ``<video>.txt`` files, header
``Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other`` then one code per frame;
beside it ``VA_Estimation_Challenge`` (header ``valence,arousal``) and
``AU_Detection_Challenge`` (the 12-AU header). Data row k is frame ``<video>/<k:05d>.jpg``.
Frames without a cropped image (no face found by the organisers) are dropped and counted.
VA and AUs join the expression rows of the same video and split; where a video has no VA or
AU file they are unknown.

Sentinels are masked per column: valence/arousal -5 and AU -1 become unknown; expression -1
(no label) drops the frame. Expression codes 0..7 are Neutral, Anger, Disgust, Fear,
Happiness, Sadness, Surprise, Other; ``Other`` is dropped unless ``--keep-other``.
Training -> train, validation -> test (the labels of ABAW's test set are not public).
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterator
from pathlib import Path

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
    au_value,
    class_list,
    csv_fields,
    data_lines,
    each_row,
    require,
    text_lines,
    to_int,
)

NAME = "affwild2"
SUMMARY = ("Aff-Wild2 (ABAW): combined MTL annotation files or per-task per-video files; "
           "VA, 12 AUs; sentinels masked")
ALIGNS = False
LABELS = {0: "Neutral", 1: "Anger", 2: "Disgust", 3: "Fear", 4: "Happiness", 5: "Sadness",
          6: "Surprise", 7: "Other"}
AU_NUMBERS = (1, 2, 4, 6, 7, 10, 12, 15, 23, 24, 25, 26)
AUS = [schema.au_column(n) for n in AU_NUMBERS]
VA_COLUMNS = [schema.VALENCE, schema.AROUSAL]
VA_SENTINEL, LABEL_SENTINEL, AU_SENTINEL = -5.0, -1, -1.0
COMBINED = {"training_set_annotations.txt": "train", "validation_set_annotations.txt": "test"}
TASK_SPLITS = {"Train_Set": "train", "Validation_Set": "test"}
EXPR_HEADER = ",".join(LABELS.values())
VA_HEADER = "valence,arousal"
AU_HEADER = ",".join(f"AU{n}" for n in AU_NUMBERS)
IMAGES = "cropped_aligned"
TaskRows = dict[int, tuple[Path, list[str]]]  # frame -> (VA or AU file, its fields)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep-other", action="store_true",
                        help="keep expression 7 'Other' as an eighth class (default: dropped, "
                             "as MTAC does)")
    parser.add_argument("--layout", choices=("auto", "combined", "tasks"), default="auto",
                        help="combined MTL files in ROOT, per-task folders (EXPR_*_Challenge "
                             "...), or auto: combined when ROOT has training_set_annotations.txt")


def read(root: Path, ledger: Ledger, *, keep_other: bool = False, layout: str = "auto") -> Source:
    """Aff-Wild2 as manifest items (see the module docstring).

    Args:
        root: folder with ``cropped_aligned/`` and the annotation files or folders.
        ledger: bookkeeping of kept / dropped / bad rows.
        keep_other: keep ``Other`` as class ``other`` after the 7 emotions.
        layout: ``auto``, ``combined`` or ``tasks``.
    """
    classes = class_list(7) + (["other"] if keep_other else [])
    labels = LabelMap(LABELS, classes, dataset="Aff-Wild2")
    images = require(root / IMAGES, "Aff-Wild2 cropped_aligned image folder")
    if layout == "auto":
        layout = "combined" if (root / next(iter(COMBINED))).is_file() else "tasks"
    if layout == "combined":
        files = [require(root / name, f"ABAW combined annotation file {name}") for name in COMBINED]
        items = (item for file in files
                 for item in _combined_items(file, COMBINED[file.name], images, ledger, labels))
    else:
        expr = _expr_folder(root)
        files = [expr]
        items = _task_items(expr, images, ledger, labels)
    notes = {"layout": layout, "protocol": "validation -> test split",
             "sentinels": "valence/arousal -5 and AU -1 written as unknown; expression -1 "
                          "dropped"}
    return Source(classes=classes, items=items, files=files, class_map=labels.describe(),
                  aus=AUS, notes=notes)


def _combined_items(file: Path, split: str, images: Path, ledger: Ledger,
                    labels: LabelMap) -> Iterator[Item]:
    def parse(line: int, text: str) -> Item | None:
        fields = csv_fields(text)
        if len(fields) != 4 + len(AUS):
            raise BadValue(MALFORMED, f"has {len(fields)} fields, expected {4 + len(AUS)} "
                           "(image, valence, arousal, expression, 12 AUs)", value=text[:80])
        label = _label(fields[3], ledger, labels)
        if label is None:
            return None
        values = {**_va(fields[1:3], ledger), **_aus(fields[4:], ledger)}
        return Item(image=images / fields[0], name=f"{IMAGES}/{fields[0]}", split=split,
                    label=label, file=file, line=line, values=values)

    rows = data_lines(file, lambda text: not _is_number(csv_fields(text)[1:2]))
    return each_row(rows, file, ledger, parse)


def _is_number(fields: list[str]) -> bool:
    try:
        float(fields[0])
    except (IndexError, ValueError):
        return False
    return True


def _label(text: str, ledger: Ledger, labels: LabelMap) -> int | None:
    code = to_int(text, "expression", UNKNOWN_LABEL)
    if code == LABEL_SENTINEL:
        ledger.drop("expression -1 (no expression label)")
        return None
    return labels.index(code, ledger, column="expression")


def _va(fields: list[str], ledger: Ledger) -> dict[str, float]:
    return {column: affect_value(text, column, ledger, sentinel=VA_SENTINEL)
            for column, text in zip(VA_COLUMNS, fields)}


def _aus(fields: list[str], ledger: Ledger) -> dict[str, float]:
    return {column: au_value(text, column, ledger, sentinel=AU_SENTINEL)
            for column, text in zip(AUS, fields)}


def _expr_folder(root: Path) -> Path:
    found = sorted({p for pattern in ("EXPR_*_Challenge", "*/EXPR_*_Challenge",
                                      "*/*/EXPR_*_Challenge") for p in root.glob(pattern)
                    if p.is_dir()})
    if len(found) != 1:
        what = "none" if not found else ", ".join(map(str, found))
        raise FileNotFoundError(f"expected one ABAW expression folder EXPR_*_Challenge under "
                                f"{root} (or the combined training_set_annotations.txt), found "
                                f"{what}")
    return found[0]


def _task_items(expr: Path, images: Path, ledger: Ledger, labels: LabelMap) -> Iterator[Item]:
    for folder, split in TASK_SPLITS.items():
        for file in sorted((expr / folder).glob("*.txt")):
            va = _task_rows(expr.parent / "VA_Estimation_Challenge" / folder / file.name,
                            VA_HEADER)
            au = _task_rows(expr.parent / "AU_Detection_Challenge" / folder / file.name,
                            AU_HEADER)
            yield from _video_items(file, split, images, va, au, ledger, labels)


def _task_rows(file: Path, header: str) -> TaskRows:
    """Frame number -> (file, fields) of a VA or AU file ({} when the video has none)."""
    if not file.is_file():
        return {}
    lines = text_lines(file)
    _check_header(file, next(lines, None), header)
    return {frame: (file, csv_fields(text)) for frame, (_, text) in enumerate(lines, start=1)}


def _check_header(file: Path, first: tuple[int, str] | None, header: str) -> None:
    if first is None or first[1].replace(" ", "") != header:
        got = "nothing" if first is None else repr(first[1][:80])
        raise ValueError(f"{file}, line 1: expected the header {header!r}, found {got}")


def _video_items(file: Path, split: str, images: Path, va: TaskRows, au: TaskRows,
                 ledger: Ledger, labels: LabelMap) -> Iterator[Item]:
    lines = text_lines(file)
    _check_header(file, next(lines, None), EXPR_HEADER)
    video = file.stem

    def parse(line: int, text: str) -> Item | None:
        frame = line - 1
        label = _label(text, ledger, labels)
        if label is None:
            return None
        name = f"{video}/{frame:05d}.jpg"
        if not (images / name).is_file():
            ledger.drop("frame without a cropped_aligned image")
            return None
        values = {**_joined(va, frame, VA_COLUMNS, _va, ledger),
                  **_joined(au, frame, AUS, _aus, ledger)}
        return Item(image=images / name, name=f"{IMAGES}/{name}", split=split, label=label,
                    file=file, line=line, values=values)

    return each_row(lines, file, ledger, parse)


def _joined(rows: TaskRows, frame: int, columns: list[str],
            convert: Callable[[list[str], Ledger], dict[str, float]],
            ledger: Ledger) -> dict[str, float]:
    """VA or AU values of one frame from its task file; unknown (NaN) without one."""
    if frame not in rows:
        return dict.fromkeys(columns, math.nan)
    file, fields = rows[frame]
    if len(fields) != len(columns):
        raise BadValue(MALFORMED, f"has {len(fields)} fields, expected {len(columns)}",
                       value=",".join(fields), file=file, line=frame + 1)
    try:
        return convert(fields, ledger)
    except BadValue as bad:
        bad.file, bad.line = file, frame + 1
        raise
