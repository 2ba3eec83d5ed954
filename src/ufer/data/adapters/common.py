"""What every ``ufer prepare`` adapter shares: class mapping, bookkeeping, images, the manifest.

An adapter reads one dataset's official files and yields :class:`Item` records (image,
split, label, extra columns, and the file and line that named it). Everything else is
here, once:

- :class:`LabelMap` maps the source's label codes onto one class list (``class_list``:
  ``schema.EMOTIONS7`` / ``EMOTIONS8`` order, see ``docs/datasets.md``), dropping the codes
  the protocol excludes with a counted reason.
- :class:`Ledger` is the bookkeeping: rows kept, dropped (reason -> count), bad rows
  skipped with ``--skip-bad`` (kind -> count, first messages), values masked (column ->
  count). Without ``--skip-bad`` a bad row raises a :class:`ManifestError` naming the file,
  line, column and value.
- :func:`run` checks ROOT and OUT (OUT never inside ROOT: ROOT is only read), stores every
  image under ``OUT/images`` (copied, linked, cropped or aligned), writes the manifest and
  its sidecar, and prints the summary.
"""
from __future__ import annotations

import math
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import pandas as pd
from PIL import Image

import ufer
from ufer.data import schema
from ufer.data.manifest import ManifestError, read_manifest, write_manifest

IMAGES_DIR = "images"  # OUT/images/<name>: every stored image
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MAX_EXAMPLES = 20  # skipped-row messages kept in the sidecar
T = TypeVar("T")

# Kinds of bad input (the keys of the sidecar's "skipped" counts).
MISSING_IMAGE = "missing image"
CORRUPT_IMAGE = "corrupt image"
UNKNOWN_LABEL = "unknown label"
MALFORMED = "malformed row"
NAN = "NaN value"
OUT_OF_RANGE = "value out of range"
DUPLICATE = "duplicate image"

# Spellings of class names found in datasets -> the project's class names (schema.EMOTIONS8).
SYNONYMS = {
    "neutral": "neutral", "happy": "happy", "happiness": "happy", "sad": "sad",
    "sadness": "sad", "surprise": "surprise", "surprised": "surprise", "fear": "fear",
    "fearful": "fear", "disgust": "disgust", "disgusted": "disgust", "anger": "anger",
    "angry": "anger", "contempt": "contempt", "other": "other",
}


class BadValue(Exception):
    """A bad value in one source row; the caller adds the file and line (``Ledger.reject``).

    Attributes:
        kind: one of the kinds above (``MALFORMED``, ``UNKNOWN_LABEL``, ...).
        problem: what is wrong, in words.
        column: the source column (or field) at fault, or None.
        value: the offending text, or None.
        file, line: where the value is, when it is not the file and line being parsed
            (FERPlus pixels live in a second file).
    """

    def __init__(self, kind: str, problem: str, column: str | None = None, value: Any = None,
                 file: Path | None = None, line: int | None = None) -> None:
        super().__init__(problem)
        self.kind, self.problem, self.column, self.value = kind, problem, column, value
        self.file, self.line = file, line


@dataclass
class Item:
    """One image an adapter wants in the manifest.

    Attributes:
        image: the source image file (under ROOT), or its pixels: uint8 (H, W) grey or
            (H, W, 3) RGB.
        name: output path under ``OUT/images`` (POSIX); the suffix becomes ``.png`` when
            the pixels are re-encoded (crop, alignment, pixel arrays).
        split: ``train`` / ``val`` / ``test``.
        label: index into the class list.
        file: the file that listed this image (annotation file, or the image itself).
        line: 1-based line of ``file`` (None for folder layouts and binary files).
        values: further manifest columns (``valence``, ``AU01``, ``dist_happy``, ...).
        box: face box (x, y, w, h) in source pixels to crop to, or None.
    """

    image: Path | np.ndarray
    name: str
    split: str
    label: int
    file: Path
    line: int | None = None
    values: dict[str, Any] = field(default_factory=dict)
    box: tuple[float, float, float, float] | None = None


@dataclass
class Source:
    """What an adapter's ``read`` returns.

    Attributes:
        classes: class names in index order.
        items: the images, lazily (bad rows go to the ledger while iterating).
        files: the annotation files or folders read (for the summary and sidecar).
        class_map: source code or name -> class name (``LabelMap.describe``).
        aus: AU columns the items carry, in order ([] for none).
        notes: source-specific facts for the sidecar (protocol, label rule, ...).
    """

    classes: list[str]
    items: Iterable[Item]
    files: list[Path]
    class_map: dict[str, str]
    aus: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)


class Aligner(Protocol):
    """Face detection + alignment handed to adapters (``ufer.inference.detect.FaceAligner``).

    ``aligner(image)`` takes uint8 (H, W, 3) RGB and returns (aligned uint8 crop, face
    record), or None when no face is found; ``describe()`` is a JSON-ready dict.
    """

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, Any] | None: ...

    def describe(self) -> dict[str, Any]: ...


class Ledger:
    """What happened to every source row: kept, dropped (why), skipped as bad, masked.

    Args:
        skip_bad: count and skip bad rows instead of raising (``--skip-bad``).
    """

    def __init__(self, skip_bad: bool = False) -> None:
        self.skip_bad = skip_bad
        self.kept = Counter()  # split -> rows kept
        self.dropped = Counter()  # reason -> count
        self.skipped = Counter()  # kind of bad input -> count
        self.masked = Counter()  # column -> values masked
        self.examples: list[str] = []

    def drop(self, reason: str, count: int = 1) -> None:
        """Record rows left out on purpose (a protocol rule), with the reason."""
        self.dropped[reason] += count

    def mask(self, column: str) -> None:
        """Record one value written as unknown (empty) in ``column``."""
        self.masked[column] += 1

    def reject(self, bad: BadValue, file: Path, line: int | None = None) -> None:
        """A bad row: raise it as a ManifestError, or with ``skip_bad`` count it."""
        error = ManifestError(bad.file or file, bad.problem, column=bad.column, value=bad.value,
                              line=bad.line or line)
        if not self.skip_bad:
            raise error
        self.skipped[bad.kind] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{bad.kind}: {error}")

    def summary(self) -> dict[str, Any]:
        """JSON-ready counts for the sidecar's ``prepare`` entry."""
        return {"kept": sum(self.kept.values()), "kept_per_split": dict(self.kept),
                "dropped": dict(self.dropped), "skipped_bad": dict(self.skipped),
                "skipped_examples": list(self.examples), "masked": dict(self.masked)}


def class_list(num_classes: int) -> list[str]:
    """The project's class list: 7 -> ``schema.EMOTIONS7``, 8 -> ``EMOTIONS8`` (+ contempt)."""
    if num_classes not in (7, 8):
        raise ValueError(f"--classes must be 7 or 8, got {num_classes}")
    return list(schema.EMOTIONS7 if num_classes == 7 else schema.EMOTIONS8)


def canonical(name: str) -> str | None:
    """The project's name for a dataset's class name (``"Angry"`` -> ``"anger"``), or None."""
    return SYNONYMS.get(name.strip().lower())


def class_name(name: str) -> str:
    """``canonical(name)``, or ``name`` itself for a class the project does not know."""
    return canonical(name) or name


def ordered_classes(names: Iterable[str]) -> list[str]:
    """Class list for a set of source class names: their project names in the project's
    order when every name is known (``schema.EMOTIONS8``, then ``other``), else the names
    sorted as they are."""
    names = set(names)
    if all(canonical(n) for n in names):
        present = {canonical(n) for n in names}
        return [c for c in (*schema.EMOTIONS8, "other") if c in present]
    return sorted(names)


class LabelMap:
    """A source's label codes -> indices into ``classes``.

    Args:
        source: code -> the source's class name, in the source's order (codes may be ints
            or folder names). Names are mapped with ``canonical``; a name it does not know
            (a user's own class) is used as it is.
        classes: the manifest's class list.
        excluded: codes the protocol drops (AffectNet 8-10) -> their name.
        dataset: the dataset's name, for messages.
    """

    def __init__(self, source: Mapping[Any, str], classes: list[str],
                 excluded: Mapping[Any, str] | None = None, dataset: str = "") -> None:
        self.source, self.classes = dict(source), list(classes)
        self.excluded = dict(excluded or {})
        self.dataset = dataset

    def index(self, code: Any, ledger: Ledger, column: str = "label") -> int | None:
        """Class index of ``code``; None (a counted drop) for excluded codes or classes
        outside ``classes``. Raises BadValue(UNKNOWN_LABEL) for any other code."""
        if code in self.excluded:
            ledger.drop(f"{self.dataset} label {code} ({self.excluded[code]})")
            return None
        if code not in self.source:
            raise BadValue(UNKNOWN_LABEL, f"is not one of {self.dataset}'s labels (known: "
                           f"{self._known()})", column=column, value=code)
        name = class_name(self.source[code])
        if name not in self.classes:
            ledger.drop(f"{self.dataset} label {code} ({self.source[code]}): not in the "
                        f"{len(self.classes)}-class list")
            return None
        return self.classes.index(name)

    def _known(self) -> str:
        pairs = {**self.source, **self.excluded}
        return ", ".join(f"{c} {n}" if str(c) != n else n for c, n in pairs.items())

    def describe(self) -> dict[str, str]:
        """Source label -> project class name (or what happens to it), for the sidecar."""
        out = {}
        for code, name in self.source.items():
            target = class_name(name)
            key = f"{code} {name}" if str(code) != name else name
            out[key] = target if target in self.classes else "dropped"
        for code, name in self.excluded.items():
            out[f"{code} {name}"] = "dropped"
        return out


def to_int(text: str, column: str, kind: str = MALFORMED) -> int:
    """``text`` as an integer (``"3"``, ``"3.0"``, ``"3.0000000e+00"``); BadValue(kind)
    otherwise, BadValue(NAN) for NaN text."""
    number = to_float(text, column, kind)
    if not number.is_integer():
        raise BadValue(kind, "is not an integer", column=column, value=text)
    return int(number)


def to_float(text: str, column: str, kind: str = MALFORMED) -> float:
    """``text`` as a finite float; BadValue(NAN) for NaN text, BadValue(kind) for anything
    else that is not a finite number (an empty field included)."""
    try:
        number = float(text)
    except (TypeError, ValueError):
        raise BadValue(kind, "is not a number", column=column, value=text) from None
    if math.isnan(number):
        raise BadValue(NAN, "is NaN", column=column, value=text)
    if math.isinf(number):
        raise BadValue(kind, "is infinite", column=column, value=text)
    return number


def affect_value(text: str, column: str, ledger: Ledger, *,
                 sentinel: float | None = None) -> float:
    """A valence or arousal value in [-1, 1], or NaN (masked, counted) when unknown.

    Args:
        text: the source field.
        column: ``valence`` or ``arousal`` (the manifest column; masks are counted under it).
        ledger: counts masks.
        sentinel: the source's "unknown" marker (ABAW: -5): it is masked and any other value
            outside [-1, 1] is BadValue(OUT_OF_RANGE). None (AffectNet): every value outside
            [-1, 1] (-2 for non-faces) is masked.
    """
    value = to_float(text, column)
    if -1.0 <= value <= 1.0:
        return value
    if sentinel is not None and value != sentinel:
        raise BadValue(OUT_OF_RANGE, f"is outside [-1, 1] and not the sentinel {sentinel:g}",
                       column=column, value=text)
    ledger.mask(column)
    return math.nan


def au_value(text: str, column: str, ledger: Ledger, *, sentinel: float = -1.0) -> float:
    """An AU occurrence 0 or 1, or NaN (masked, counted) for the sentinel (ABAW: -1)."""
    value = to_float(text, column)
    if value == sentinel:
        ledger.mask(column)
        return math.nan
    if value not in (0.0, 1.0):
        raise BadValue(OUT_OF_RANGE, f"is not an AU occurrence (0, 1, or {sentinel:g} for "
                       "unknown)", column=column, value=text)
    return value


def each_row(rows: Iterable[tuple[int, Any]], file: Path, ledger: Ledger,
             parse: Callable[[int, Any], T | None]) -> Iterator[T]:
    """``parse`` every (line, row) and yield what is not None; a BadValue becomes
    ``ledger.reject`` at that line of ``file``."""
    for line, row in rows:
        try:
            item = parse(line, row)
        except BadValue as bad:
            ledger.reject(bad, file, line)
            continue
        if item is not None:
            yield item


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line, stripped text) of the non-blank lines of a text file."""
    with open(path, encoding="utf-8-sig") as handle:
        for number, text in enumerate(handle, start=1):
            if text.strip():
                yield number, text.strip()


def data_lines(path: Path, is_header: Callable[[str], bool]) -> Iterator[tuple[int, str]]:
    """``text_lines`` without the first line when ``is_header(first line)`` (for files whose
    header row is present in some copies and missing in others)."""
    lines = text_lines(path)
    first = next(lines, None)
    if first is not None and not is_header(first[1]):
        yield first
    yield from lines


def csv_fields(text: str) -> list[str]:
    """One comma-separated line split into stripped fields (no quoting in these formats)."""
    return [f.strip() for f in text.split(",")]


def require(path: Path, what: str) -> Path:
    """``path`` if it exists, else FileNotFoundError saying what it is and where it comes from."""
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def subfolders(folder: Path) -> list[Path]:
    """The folders directly in ``folder``, sorted; hidden ones ignored."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def image_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) directly in ``folder``, sorted; hidden files ignored."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    return images, [p for p in files if p not in images]


def class_folder_items(folder: Path, split: str, root: Path, labels: LabelMap,
                       ledger: Ledger) -> Iterator[Item]:
    """Items of a ``<folder>/<class>/<image>`` tree: the class is the subfolder's name.

    Files that are not images are dropped and counted; an image in a folder that is not a
    class is a bad row (``UNKNOWN_LABEL``) naming the image. Output names keep the path
    relative to ``root``.
    """
    for class_dir in subfolders(folder):
        images, others = image_files(class_dir)
        if others:
            ledger.drop("not an image file", len(others))
        for image in images:
            try:
                label = labels.index(class_dir.name, ledger, column="folder")
            except BadValue as bad:
                ledger.reject(bad, image)
                continue
            if label is not None:
                yield Item(image=image, name=image.relative_to(root).as_posix(), split=split,
                           label=label, file=image)


# --- images ---------------------------------------------------------------------------------


def decode(path: Path) -> Image.Image:
    """Open and fully decode an image; BadValue(MISSING_IMAGE / CORRUPT_IMAGE) otherwise."""
    if not path.is_file():
        raise BadValue(MISSING_IMAGE, f"names an image that does not exist: {path}",
                       value=path.name)
    try:
        with Image.open(path) as opened:
            opened.load()
            return opened.copy()
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadValue(CORRUPT_IMAGE, f"names an image that cannot be decoded ({path}: {exc})",
                       value=path.name) from None


def crop_box(image: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    """Crop to the face box (x, y, w, h), clipped to the image; BadValue if nothing is left."""
    x, y, w, h = box
    left, top = max(0, round(x)), max(0, round(y))
    right, bottom = min(image.width, round(x + w)), min(image.height, round(y + h))
    if w <= 0 or h <= 0 or right <= left or bottom <= top:
        raise BadValue(OUT_OF_RANGE, f"face box (x, y, w, h) lies outside the "
                       f"{image.width} x {image.height} image", column="face box",
                       value=f"{x:g}, {y:g}, {w:g}, {h:g}")
    return image.crop((left, top, right, bottom))


class ImageWriter:
    """Stores item images under ``OUT/images``: copied (or linked) as they are when nothing
    changes them, otherwise re-encoded as PNG (crop, alignment, pixel arrays).

    Args:
        out: the output folder.
        align: detection + alignment applied to every image, or None.
        link: symlink unchanged images instead of copying them.
    """

    def __init__(self, out: Path, align: Aligner | None = None, link: bool = False) -> None:
        self.out, self.align, self.link = out, align, link
        self.seen: dict[str, str] = {}  # output name -> where it was first listed

    def store(self, item: Item) -> str | None:
        """Write the item's image; return its manifest path, or None when no face is found.

        Raises:
            BadValue: missing or corrupt image, bad face box, an image listed twice, or a
                name that would leave ``OUT/images``.
        """
        if Path(item.name).is_absolute() or ".." in Path(item.name).parts:
            raise BadValue(MALFORMED, "is not a relative path inside the dataset",
                           value=item.name)
        unchanged = self._unchanged(item)
        name = item.name if unchanged else str(Path(item.name).with_suffix(".png"))
        if name in self.seen:
            raise BadValue(DUPLICATE, f"is listed twice (first: {self.seen[name]})",
                           value=item.name)
        image = self._image(item)
        if image is None:
            return None
        target = self.out / IMAGES_DIR / name
        target.parent.mkdir(parents=True, exist_ok=True)
        self.seen[name] = f"{item.file}" + ("" if item.line is None else f", line {item.line}")
        if unchanged:
            self._copy(item.image, target)
        else:
            image.save(target)
        return f"{IMAGES_DIR}/{name}"

    def _unchanged(self, item: Item) -> bool:
        return isinstance(item.image, Path) and item.box is None and self.align is None

    def _image(self, item: Item) -> Image.Image | None:
        """The decoded image after crop and alignment (None: no face found)."""
        if isinstance(item.image, np.ndarray):
            image = Image.fromarray(item.image)
        else:
            image = decode(item.image)
        if item.box is not None:
            image = crop_box(image, item.box)
        if self.align is not None:
            found = self.align(np.asarray(image.convert("RGB")))
            if found is None:
                return None
            image = Image.fromarray(found[0])
        return image if image.mode in ("L", "RGB") else image.convert("RGB")

    def _copy(self, source: Path, target: Path) -> None:
        if target.is_symlink() or target.exists():
            target.unlink()
        if self.link:
            os.symlink(source.resolve(), target)
        else:
            shutil.copyfile(source, target)

    def describe(self) -> dict[str, Any]:
        """How images were stored, for the sidecar."""
        how = "linked" if self.link else "copied"
        return {"folder": IMAGES_DIR, "unchanged_images": how, "changed_images": "PNG",
                "aligned": False if self.align is None else self.align.describe()}


# --- the run ------------------------------------------------------------------------------------


def check_locations(root: Path, out: Path, table: str, overwrite: bool) -> Path:
    """The manifest path ``OUT/table`` after checking that ROOT exists, that OUT is not ROOT
    or inside it (ROOT is never written to), and that no manifest would be replaced."""
    if not root.is_dir():
        raise FileNotFoundError(f"ROOT is not a folder: {root}")
    root_r, out_r = root.resolve(), out.resolve()
    if out_r == root_r or root_r in out_r.parents:
        raise ValueError(f"OUT {out} is inside ROOT {root}; ROOT is only read, choose an "
                         "output folder outside it")
    manifest = out / table
    if Path(table).suffix not in (".csv", ".parquet"):
        raise ValueError(f"manifest name {table!r} must end in .csv or .parquet")
    existing = [p for p in (manifest, schema.sidecar_path(manifest)) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists; pass --overwrite to replace it")
    return manifest


def run(name: str, root: Path, out: Path, read: Callable[[Ledger], Source], *,
        options: dict[str, Any], skip_bad: bool = False, overwrite: bool = False,
        align: Aligner | None = None, link: bool = False, table: str = "manifest.csv",
        log: Callable[[str], None] = print) -> Path:
    """Convert one source into ``OUT/table`` + sidecar + ``OUT/images``.

    Args:
        name: the source's name (``rafdb``, ...).
        root: the dataset as downloaded; only read.
        out: output folder (created).
        read: the adapter's ``read`` bound to ROOT and its options: ledger -> Source.
        options: the adapter options used, recorded in the sidecar.
        skip_bad: count and skip bad rows instead of stopping at the first.
        overwrite: replace an existing manifest in OUT.
        align: face detection + alignment for every image, or None.
        link: symlink unchanged images instead of copying.
        table: manifest file name in OUT (``.csv`` or ``.parquet``).
        log: where the summary lines go.

    Returns:
        The manifest path.
    """
    manifest = check_locations(root, out, table, overwrite)
    ledger = Ledger(skip_bad)
    source = read(ledger)
    writer = ImageWriter(out, align, link)
    rows = list(_rows(source, writer, ledger))
    if not rows:
        raise ValueError(f"{name}: no image kept from {root} ({_dropped_text(ledger)})")
    frame = _frame(rows, source)
    meta = _meta(name, root, source, ledger, writer, options)
    write_manifest(frame, meta, manifest)
    read_manifest(manifest)  # what training will read must pass the loader's checks
    for line in summary_lines(name, root, manifest, source, ledger):
        log(line)
    return manifest


def _rows(source: Source, writer: ImageWriter, ledger: Ledger) -> Iterator[dict[str, Any]]:
    for item in source.items:
        try:
            path = writer.store(item)
        except BadValue as bad:
            ledger.reject(bad, item.file, item.line)
            continue
        if path is None:
            ledger.drop("no face detected")
            continue
        ledger.kept[item.split] += 1
        yield {schema.PATH: path, schema.SPLIT: item.split, schema.LABEL: item.label,
               **item.values}


def _frame(rows: list[dict[str, Any]], source: Source) -> pd.DataFrame:
    """Rows as a table: path, split, label, VA, AUs (source order), dist_*, the rest."""
    frame = pd.DataFrame(rows)
    for column in source.aus:  # the dataset's AU list, even where no row knows a value
        if column not in frame.columns:
            frame[column] = np.nan
    first = [schema.PATH, schema.SPLIT, schema.LABEL, schema.VALENCE, schema.AROUSAL,
             *source.aus]
    dist = [schema.DIST_PREFIX + c for c in source.classes]
    ordered = [c for c in first + dist if c in frame.columns]
    return frame[ordered + [c for c in frame.columns if c not in ordered]]


def _meta(name: str, root: Path, source: Source, ledger: Ledger, writer: ImageWriter,
          options: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {"classes": source.classes}
    if source.aus:
        meta["aus"] = list(source.aus)
    meta["source"] = {
        "name": name, "root": str(root.resolve()),
        "files": [_relative(f, root) for f in source.files],
        "options": {k: _jsonable(v) for k, v in options.items()},
        "class_map": source.class_map, **source.notes,
    }
    meta["prepare"] = {**ledger.summary(), "images": writer.describe(),
                       "ufer_version": ufer.__version__}
    return meta


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to ROOT (``ROOT`` for ROOT itself), or as given when outside it."""
    try:
        relative = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)
    return "ROOT" if relative == "." else relative


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def _dropped_text(ledger: Ledger) -> str:
    parts = [f"{reason} {n}" for reason, n in ledger.dropped.items()]
    parts += [f"skipped {kind} {n}" for kind, n in ledger.skipped.items()]
    return "; ".join(parts) or "nothing was listed"


def summary_lines(name: str, root: Path, manifest: Path, source: Source,
                  ledger: Ledger) -> list[str]:
    """What was read, kept, dropped (why), skipped and masked, in a few lines."""
    kept = sum(ledger.kept.values())
    splits = ", ".join(f"{s} {n}" for s, n in ledger.kept.items())
    classes = ", ".join(f"{i} {c}" for i, c in enumerate(source.classes))
    lines = [f"ufer prepare {name}: {root} -> {manifest}",
             "  read     " + ", ".join(_relative(f, root) for f in source.files),
             f"  classes  {classes}",
             f"  kept     {kept} ({splits})"]
    for title, counts in (("dropped", ledger.dropped), ("skipped", ledger.skipped),
                          ("masked", ledger.masked)):
        if counts:
            detail = "; ".join(f"{k}: {n}" for k, n in counts.items())
            lines.append(f"  {title:8s} {sum(counts.values())} ({detail})")
    if ledger.skipped:
        lines.append("  (bad rows skipped with --skip-bad; the first are listed in the sidecar)")
    return lines
