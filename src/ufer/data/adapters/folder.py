"""A user's own faces: ``ROOT/<class>/<image>``, or ``ROOT/<split>/<class>/<image>``.

The class is the folder name. When every class folder is an emotion name the project knows
(``angry``, ``Happiness``, ...; see ``common.SYNONYMS``), the classes get the project's
names and order (``schema.EMOTIONS8``); otherwise the folder names are kept, sorted. When
ROOT's folders are all split names (``train``, ``val``, ``test``) they give the split;
otherwise every image goes to ``--split`` (default train).

``--csv FILE`` adds columns: a header with ``path`` (the image path relative to ROOT) and
any of ``split``, ``valence``, ``arousal`` (in [-1, 1]), ``AU01``... (in [0, 1]) and other
columns, which are copied as they are. An empty cell is unknown. Images without a CSV row
keep unknown values; a CSV row naming no image under ROOT is a bad row.
"""
from __future__ import annotations

import argparse
import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ufer.data import schema
from ufer.data.adapters.common import (
    MALFORMED,
    MISSING_IMAGE,
    OUT_OF_RANGE,
    BadValue,
    Item,
    LabelMap,
    Ledger,
    Source,
    class_folder_items,
    each_row,
    ordered_classes,
    require,
    subfolders,
    to_float,
)

NAME = "folder"
SUMMARY = "your own faces: ROOT/<class>/*.jpg (or ROOT/<split>/<class>/); optional --csv columns"
ALIGNS = True
RESERVED = (schema.LABEL, schema.CLEAN_LABEL, schema.NOISY, schema.GIVEN_LABEL)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--csv", type=Path, default=None, metavar="FILE",
                        help="extra columns per image: header 'path,...' (path relative to "
                             "ROOT); split, valence, arousal, AUxx and any other columns")
    parser.add_argument("--split", choices=schema.SPLITS, default="train",
                        help="split of every image when ROOT has no train/val/test folders "
                             "(default: train)")


def read(root: Path, ledger: Ledger, *, csv: Path | None = None, split: str = "train") -> Source:
    """A class-folder tree as manifest items (see the module docstring).

    Args:
        root: ``ROOT/<class>/`` or ``ROOT/<split>/<class>/``.
        ledger: bookkeeping of kept / dropped / bad rows.
        csv: optional CSV of extra columns keyed by ``path``.
        split: split of every image in the flat layout.
    """
    top = subfolders(root)
    by_split = bool(top) and all(d.name in schema.SPLITS for d in top)
    trees = [(d, d.name) for d in top] if by_split else [(root, split)]
    names = {c.name for tree, _ in trees for c in subfolders(tree)}
    if not names:
        raise FileNotFoundError(f"no class folders in {root} (expected ROOT/<class>/<image> or "
                                "ROOT/<split>/<class>/<image>)")
    classes = ordered_classes(names)
    labels = LabelMap({n: n for n in sorted(names)}, classes, dataset="folder")
    extra = _read_extra(require(csv, "--csv file"), ledger) if csv is not None else {}
    items = (item for tree, part in trees
             for item in class_folder_items(tree, part, root, labels, ledger))
    files = [root] + ([csv] if csv is not None else [])
    layout = "ROOT/<split>/<class>/" if by_split else f"ROOT/<class>/ (all {split})"
    return Source(classes=classes, items=_with_extra(items, extra, csv, ledger), files=files,
                  class_map=labels.describe(), notes={"layout": layout})


def _read_extra(file: Path, ledger: Ledger) -> dict[str, tuple[int, dict[str, Any]]]:
    """CSV path -> (line, manifest values) for every good row of ``file``."""
    with open(file, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, skipinitialspace=True)
        header = [h.strip() for h in next(reader, [])]
        _check_header(file, header)
        rows = [(reader.line_num, row) for row in reader if any(f.strip() for f in row)]

    def parse(line: int, row: list[str]) -> tuple[str, int, dict[str, Any]]:
        if len(row) != len(header):
            raise BadValue(MALFORMED, f"has {len(row)} fields, the header {len(header)}",
                           value=",".join(row)[:80])
        values = dict(zip(header, (f.strip() for f in row)))
        path = values.pop(schema.PATH)
        return path, line, {c: _extra_value(c, v) for c, v in values.items()}

    extra: dict[str, tuple[int, dict[str, Any]]] = {}
    for path, line, values in each_row(rows, file, ledger, parse):
        if path in extra:
            ledger.reject(BadValue(MALFORMED, f"repeats the path of line {extra[path][0]}",
                                   column=schema.PATH, value=path), file, line)
        else:
            extra[path] = (line, values)
    return extra


def _check_header(file: Path, header: list[str]) -> None:
    if schema.PATH not in header:
        raise ValueError(f"{file}, line 1: the header needs a 'path' column, found {header}")
    reserved = [c for c in header if c in RESERVED]
    if reserved:
        raise ValueError(f"{file}, line 1: columns {reserved} cannot come from --csv (the label "
                         "is the folder name)")


def _extra_value(column: str, text: str) -> Any:
    """A CSV cell as a manifest value: NaN when empty (None for ``split``: the folder's),
    checked numbers for VA and AUs, text for other columns."""
    if text == "":
        return None if column == schema.SPLIT else float("nan")
    if column == schema.SPLIT:
        if text not in schema.SPLITS:
            raise BadValue(MALFORMED, f"is not a split ({', '.join(schema.SPLITS)})",
                           column=column, value=text)
        return text
    bounds = {schema.VALENCE: (-1.0, 1.0), schema.AROUSAL: (-1.0, 1.0)}.get(
        column, (0.0, 1.0) if schema.is_au_column(column) else None)
    if bounds is None:
        return text
    value = to_float(text, column)
    if not bounds[0] <= value <= bounds[1]:
        raise BadValue(OUT_OF_RANGE, f"is outside [{bounds[0]:g}, {bounds[1]:g}]", column=column,
                       value=text)
    return value


def _with_extra(items: Iterator[Item], extra: dict[str, tuple[int, dict[str, Any]]],
                file: Path | None, ledger: Ledger) -> Iterator[Item]:
    """Items with their CSV values; afterwards, CSV rows that named no image are bad rows."""
    for item in items:
        values = extra.pop(item.name, (0, {}))[1]
        item.split = values.pop(schema.SPLIT, None) or item.split
        item.values.update(values)
        yield item
    for path, (line, _) in extra.items():
        ledger.reject(BadValue(MISSING_IMAGE, "names no image under ROOT/<class>/",
                               column=schema.PATH, value=path), file, line)
