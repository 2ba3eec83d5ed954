"""RAF-DB basic: ``EmoLabel/list_patition_label.txt`` (sic) + ``Image/aligned`` or ``original``.

Each line is ``<name> <label>``, space-separated, no header (the official file has no
trailing newline). Labels 1..7 are Surprise, Fear, Disgust, Happiness, Sadness, Anger,
Neutral. The split is the name prefix: ``train_00001.jpg`` (5 digits) -> train,
``test_0001.jpg`` (4 digits) -> test; RAF-DB has no validation split. Aligned images
(100 x 100) insert ``_aligned`` before the extension.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from ufer.data.adapters.common import (
    MALFORMED,
    UNKNOWN_LABEL,
    BadValue,
    Item,
    LabelMap,
    Ledger,
    Source,
    class_list,
    each_row,
    require,
    text_lines,
    to_int,
)

NAME = "rafdb"
SUMMARY = "RAF-DB basic: EmoLabel/list_patition_label.txt + Image/aligned (or original)"
ALIGNS = False
LABEL_FILE = "EmoLabel/list_patition_label.txt"
LABELS = {1: "Surprise", 2: "Fear", 3: "Disgust", 4: "Happiness", 5: "Sadness", 6: "Anger",
          7: "Neutral"}
_NAME = re.compile(r"^(?P<split>train)_\d{5}\.jpg$|^(?P<test>test)_\d{4}\.jpg$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", choices=("aligned", "original"), default="aligned",
                        help="Image/aligned/*_aligned.jpg (100 x 100, default) or "
                             "Image/original/*.jpg")


def read(root: Path, ledger: Ledger, *, images: str = "aligned") -> Source:
    """RAF-DB basic as manifest items (see the module docstring).

    Args:
        root: the RAF-DB ``basic`` folder (holds ``EmoLabel/`` and ``Image/``).
        ledger: bookkeeping of kept / dropped / bad rows.
        images: ``aligned`` or ``original``.
    """
    label_file = require(root / LABEL_FILE, "RAF-DB label list (from the RAF-DB 'basic' "
                                            "download)")
    image_dir = require(root / "Image" / images, f"RAF-DB {images} image folder")
    classes = class_list(7)
    labels = LabelMap(LABELS, classes, dataset="RAF-DB")

    def parse(line: int, text: str) -> Item | None:
        fields = text.split()
        if len(fields) != 2:
            raise BadValue(MALFORMED, "is not '<image name> <label>'", value=text)
        name, code = fields
        match = _NAME.match(name)
        if match is None:
            raise BadValue(MALFORMED, "is not a RAF-DB image name (train_NNNNN.jpg or "
                           "test_NNNN.jpg)", column="name", value=name)
        label = labels.index(to_int(code, "label", UNKNOWN_LABEL), ledger)
        if label is None:
            return None
        file = f"{Path(name).stem}_aligned.jpg" if images == "aligned" else name
        return Item(image=image_dir / file, name=f"{images}/{file}",
                    split="train" if match["split"] else "test", label=label,
                    file=label_file, line=line)

    return Source(classes=classes, items=each_row(text_lines(label_file), label_file, ledger,
                                                  parse),
                  files=[label_file, image_dir], class_map=labels.describe(),
                  notes={"protocol": "train_* -> train, test_* -> test; no validation split"})
