"""Manifest I/O: the one table every dataset is converted into (see ``data/schema.py``).

``read_manifest`` validates a manifest at the boundary: every problem raises a
:class:`ManifestError` naming the file, the row (and CSV line), the column and the bad
value. Inside the package a :class:`Manifest` is trusted: its frame is typed and checked.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ufer.data import schema

MANIFEST_FORMAT_VERSION = 1
ROW = "row"  # added by Manifest.split: the row number in the manifest file, for messages
DIST_TOLERANCE = 1e-3  # |sum(dist_*) - 1| allowed per row
_NAN_TEXT = re.compile(r"^\s*[+-]?nan\s*$", re.IGNORECASE)
_REQUIRED = (schema.PATH, schema.SPLIT, schema.LABEL)


class ManifestError(ValueError):
    """A manifest (or its sidecar or images) is invalid; the message names where and why.

    Attributes:
        file: the file at fault (manifest, sidecar).
        row: 0-based data row, or None when the problem is not about one row.
        column: column name, or None.
        value: the offending value as text, or None.
        problem: what is wrong, in words.
        line: 1-based line in a CSV file (``row + 2`` for a data row), or None.
    """

    def __init__(
        self,
        file: str | Path,
        problem: str,
        *,
        row: int | None = None,
        column: str | None = None,
        value: Any = None,
        line: int | None = None,
    ) -> None:
        self.file = Path(file)
        self.problem = problem
        self.row = None if row is None else int(row)
        self.column = column
        self.value = None if value is None else str(value)
        if line is None and self.row is not None and self.file.suffix == ".csv":
            line = self.row + 2
        self.line = line
        super().__init__(self._format())

    def _format(self) -> str:
        where = str(self.file)
        if self.row is not None:
            where += f", row {self.row}"
            if self.line is not None:
                where += f" (line {self.line})"
        elif self.line is not None:
            where += f", line {self.line}"
        if self.column is not None:
            where += f", column '{self.column}'"
        what = self.problem if self.value is None else f"value '{self.value}' {self.problem}"
        return f"{where}: {what}"

    def __reduce__(self) -> tuple:
        kwargs = {"row": self.row, "column": self.column, "value": self.value, "line": self.line}
        return _rebuild_error, (self.file, self.problem, kwargs)


def _rebuild_error(file: Path, problem: str, kwargs: dict[str, Any]) -> ManifestError:
    return ManifestError(file, problem, **kwargs)


@dataclass
class Manifest:
    """A validated manifest: typed table, sidecar metadata and where it was read from.

    Attributes:
        frame: one row per image. ``path`` / ``split`` are str, ``label`` (and ``clean_label``,
            ``given_label``) int64, ``valence`` / ``arousal`` / ``AUxx`` / ``dist_*`` float64
            with NaN where unknown, ``noisy`` bool. A split view also has ``row``.
        meta: the sidecar content (``classes``, ``aus``, source, noise protocol, counts).
        path: the manifest file; image paths are relative to its folder.
    """

    frame: pd.DataFrame
    meta: dict[str, Any]
    path: Path

    @property
    def root(self) -> Path:
        """Folder that image paths are relative to."""
        return self.path.parent

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def num_classes(self) -> int:
        return len(self.meta["classes"])

    @property
    def au_names(self) -> list[str]:
        """AU columns present, in the sidecar's ``aus`` order when given, else file order."""
        present = [c for c in self.frame.columns if schema.is_au_column(c)]
        order = [_au_name(a) for a in self.meta.get("aus", [])]
        ranked = [a for a in order if a in present]
        return ranked + [a for a in present if a not in ranked]

    @property
    def dist_columns(self) -> list[str]:
        """``dist_<class>`` in class order, or [] when the manifest has no distributions."""
        if not self.has_dist:
            return []
        return [schema.DIST_PREFIX + c for c in self.classes]

    @property
    def has_va(self) -> bool:
        return schema.VALENCE in self.frame.columns and schema.AROUSAL in self.frame.columns

    @property
    def has_dist(self) -> bool:
        return any(c.startswith(schema.DIST_PREFIX) for c in self.frame.columns)

    @property
    def has_clean_label(self) -> bool:
        return schema.CLEAN_LABEL in self.frame.columns

    def split(self, name: str) -> Manifest:
        """Rows of one split, index reset to 0..n-1, with ``row`` = row number in the file."""
        if name not in schema.SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {', '.join(schema.SPLITS)}")
        frame = self.frame
        if ROW not in frame.columns:
            frame = frame.assign(**{ROW: np.arange(len(frame))})
        part = frame[frame[schema.SPLIT] == name].reset_index(drop=True)
        return Manifest(frame=part, meta=self.meta, path=self.path)

    def source_row(self, i: int) -> int:
        """Row number in the manifest file of row ``i`` of this (possibly split) view."""
        return int(self.frame[ROW].iat[i]) if ROW in self.frame.columns else int(i)

    def image_path(self, i: int) -> Path:
        """Resolved image path of row ``i``."""
        return self.root / self.frame[schema.PATH].iat[i]

    def row_ids(self) -> np.ndarray:
        """int64 (N,): a 64-bit hash of each row's image path and label, in row order. What a
        run's per-sample state is bound to: another order, path or label changes it."""
        keys = self.frame[schema.PATH].astype(str) + "\t" + self.frame[schema.LABEL].astype(str)
        return np.array([int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(),
                                        "little", signed=True) for k in keys], dtype=np.int64)

    def check_rows(self, ids: np.ndarray) -> None:
        """Raise a ValueError naming the first row whose (path, label) is not the one ``ids``
        (a run's ``row_ids`` of this view) recorded, or a different row count."""
        if len(ids) != len(self):
            raise ValueError(f"{self.path}: {len(self)} rows here but the run trained on "
                             f"{len(ids)}; use the manifest the run was trained on")
        differ = np.flatnonzero(self.row_ids() != ids)
        if len(differ):
            i = int(differ[0])
            raise ValueError(
                f"{self.path}: row {self.source_row(i)} (line {self.source_row(i) + 2}, path "
                f"{self.frame[schema.PATH].iat[i]!r}, label {self.frame[schema.LABEL].iat[i]}) is "
                f"not the row the run trained on there ({len(differ)} of {len(self)} rows "
                "differ): the manifest was reordered or changed. Use the manifest the run "
                "was trained on; per-sample state is bound to its rows")

    def __len__(self) -> int:
        return len(self.frame)


def _au_name(entry: str | int) -> str:
    return schema.au_column(entry) if isinstance(entry, int) else str(entry)


def write_manifest(frame: pd.DataFrame, meta: dict[str, Any], path: str | Path) -> Path:
    """Write ``frame`` as CSV (``.csv``) or Parquet (``.parquet``) plus its JSON sidecar.

    Args:
        frame: one row per image with at least ``path``, ``split``, ``label``.
        meta: sidecar content; must hold ``classes`` (list of class names). ``counts``
            (rows per split and per class) and ``format_version`` are filled in here.
        path: destination table; the sidecar goes to ``schema.sidecar_path(path)``.

    Returns:
        The path of the table written.
    """
    path = Path(path)
    if "classes" not in meta:
        raise ValueError(f"{path}: manifest metadata needs 'classes'")
    path.parent.mkdir(parents=True, exist_ok=True)
    classes = list(meta["classes"])
    counts = {
        split: {c: int((part[schema.LABEL] == k).sum()) for k, c in enumerate(classes)}
        for split, part in frame.groupby(schema.SPLIT, sort=False)
    }
    sidecar = {**meta, "format_version": MANIFEST_FORMAT_VERSION, "counts": counts}
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        raise ValueError(f"{path}: a manifest must end in .csv or .parquet")
    schema.sidecar_path(path).write_text(json.dumps(sidecar, indent=2) + "\n")
    return path


def relocate_paths(paths: pd.Series, root: Path, new_root: Path) -> pd.Series:
    """Image paths relative to folder ``root`` rewritten relative to ``new_root`` (POSIX
    separators), for a manifest written into another folder than the one it came from."""
    if root.resolve() == new_root.resolve():
        return paths
    return paths.map(lambda p: Path(os.path.relpath(root / p, new_root)).as_posix())


def read_manifest(path: str | Path, *, check_images: bool = True) -> Manifest:
    """Read and validate a manifest (CSV or Parquet) and its JSON sidecar.

    In a CSV an empty cell means unknown (VA, AU); a literal ``nan`` is an error. In Parquet
    a null/NaN means unknown, except in ``label``.

    Args:
        path: ``.csv`` or ``.parquet`` manifest; the sidecar is ``schema.sidecar_path(path)``.
        check_images: also check that every image file exists.

    Returns:
        The validated :class:`Manifest` with a typed frame (see its docstring).

    Raises:
        FileNotFoundError: the manifest file does not exist.
        ManifestError: anything else, naming file, row, column and value.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    meta = _read_sidecar(path)
    frame = _read_table(path)
    frame = _validate(frame, meta, path)
    manifest = Manifest(frame=frame, meta=meta, path=path)
    if check_images:
        _check_images(manifest)
    return manifest


def _read_sidecar(path: Path) -> dict[str, Any]:
    sidecar = schema.sidecar_path(path)
    if not sidecar.is_file():
        raise ManifestError(
            path, f"sidecar {sidecar} is missing (it holds the class list: {{\"classes\": [...]}})"
        )
    try:
        meta = json.loads(sidecar.read_text())
    except json.JSONDecodeError as exc:
        raise ManifestError(sidecar, f"is not valid JSON: {exc}", line=exc.lineno) from exc
    classes = meta.get("classes") if isinstance(meta, dict) else None
    if not classes or not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise ManifestError(sidecar, "needs 'classes': a non-empty list of class names")
    if len(set(classes)) != len(classes):
        raise ManifestError(sidecar, f"'classes' has duplicate names: {classes}")
    return meta


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix != ".csv":
        raise ManifestError(path, "a manifest must end in .csv or .parquet")
    try:
        # Numeric columns are parsed by the C parser, which leaves anything that is not a
        # number (including "nan") as text; _parse_numbers reports such cells.
        text = {schema.PATH: str, schema.SPLIT: str}
        return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=text)
    except pd.errors.ParserError as exc:
        raise _parser_error(path, exc) from exc
    except pd.errors.EmptyDataError as exc:
        raise ManifestError(path, "is empty (no header row)") from exc
    except UnicodeDecodeError as exc:
        raise _encoding_error(path) from exc


def _encoding_error(path: Path) -> ManifestError:
    """Where a CSV that is not UTF-8 first fails to decode (error path only)."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        byte = data[exc.start:exc.start + 1].hex()
        return ManifestError(path, f"is not UTF-8 text (byte 0x{byte} at offset {exc.start}); "
                             "save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)", line=line)
    return ManifestError(path, "is not UTF-8 text; save it as UTF-8")


def _parser_error(path: Path, exc: pd.errors.ParserError) -> ManifestError:
    text = str(exc)
    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if found:
        expected, line, saw = found.groups()
        return ManifestError(
            path, f"malformed CSV: {saw} fields where the header has {expected}", line=int(line)
        )
    return ManifestError(path, f"malformed CSV: {text}")


def _validate(frame: pd.DataFrame, meta: dict[str, Any], path: Path) -> pd.DataFrame:
    frame = frame.reset_index(drop=True)
    columns = ", ".join(map(str, frame.columns))
    for column in _REQUIRED:
        if column not in frame.columns:
            raise ManifestError(path, f"required column is missing (columns: {columns})",
                                column=column)
    if (schema.VALENCE in frame.columns) != (schema.AROUSAL in frame.columns):
        raise ManifestError(path, "'valence' and 'arousal' must come together (columns: "
                            f"{columns})")
    classes = list(meta["classes"])
    out = frame.copy()
    out[schema.PATH] = _check_paths(frame, path)
    out[schema.SPLIT] = _check_splits(frame, path)
    for column in (schema.LABEL, schema.CLEAN_LABEL, schema.GIVEN_LABEL):
        if column in frame.columns:
            out[column] = _class_index(frame, column, classes, path)
    for column in (schema.VALENCE, schema.AROUSAL):
        if column in frame.columns:
            out[column] = _number(frame, column, path, low=-1.0, high=1.0, missing_ok=True)
    for column in (c for c in frame.columns if schema.is_au_column(c)):
        out[column] = _number(frame, column, path, low=0.0, high=1.0, missing_ok=True)
    _check_dist(frame, out, classes, path)
    if schema.NOISY in frame.columns:
        out[schema.NOISY] = _flag(frame, schema.NOISY, path)
    return out


def _first(mask: np.ndarray | pd.Series) -> int | None:
    hits = np.flatnonzero(np.asarray(mask, dtype=bool))
    return int(hits[0]) if len(hits) else None


def _as_text(frame: pd.DataFrame, column: str) -> pd.Series:
    """The column as str with NaN for missing (Parquet columns may be typed)."""
    col = frame[column]
    return col.where(col.isna(), col.astype(str))


def _check_paths(frame: pd.DataFrame, path: Path) -> pd.Series:
    paths = _as_text(frame, schema.PATH)
    bad = _first(paths.isna() | (paths.fillna("").str.strip() == ""))
    if bad is not None:
        raise ManifestError(path, "image path is empty", row=bad, column=schema.PATH)
    dup = _first(paths.duplicated())
    if dup is not None:
        value = paths.iat[dup]
        first = _first(paths == value)
        raise ManifestError(path, f"duplicates row {first}{_line(path, first)}", row=dup,
                            column=schema.PATH, value=value)
    return paths.astype(str)


def _line(path: Path, row: int) -> str:
    return f" (line {row + 2})" if path.suffix == ".csv" else ""


def _check_splits(frame: pd.DataFrame, path: Path) -> pd.Series:
    splits = _as_text(frame, schema.SPLIT)
    bad = _first(~splits.isin(schema.SPLITS))
    if bad is not None:
        value = splits.iat[bad]
        raise ManifestError(path, f"is not a split ({', '.join(schema.SPLITS)})", row=bad,
                            column=schema.SPLIT, value="" if pd.isna(value) else value)
    return splits.astype(str)


def _parse_numbers(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """float64 column, NaN where empty. Raises on text that is not a number or is ``nan``."""
    col = frame[column]
    if pd.api.types.is_bool_dtype(col):
        raise ManifestError(path, "holds booleans, expected numbers", column=column)
    if pd.api.types.is_numeric_dtype(col):
        return col.astype("float64")
    text = _as_text(frame, column)
    numbers = pd.to_numeric(text, errors="coerce").astype("float64")
    bad = _first(numbers.isna() & text.notna())
    if bad is not None:
        value = text.iat[bad]
        problem = ("is NaN; leave the cell empty for an unknown value" if _NAN_TEXT.match(value)
                   else "is not a number")
        raise ManifestError(path, problem, row=bad, column=column, value=value)
    return numbers


def _number(frame: pd.DataFrame, column: str, path: Path, *, low: float, high: float,
            missing_ok: bool) -> pd.Series:
    numbers = _parse_numbers(frame, column, path)
    if not missing_ok:
        missing = _first(numbers.isna())
        if missing is not None:
            raise ManifestError(path, "is empty; every row needs a value", row=missing,
                                column=column)
    bad = _first(numbers.notna() & ~numbers.between(low, high))
    if bad is not None:
        problem = "is negative" if high == np.inf else f"is outside [{low:g}, {high:g}]"
        raise ManifestError(path, problem, row=bad, column=column,
                            value=_raw(frame, column, bad, path))
    return numbers


def _raw(frame: pd.DataFrame, column: str, row: int, path: Path) -> str:
    """A cell as written in the file (a CSV column is re-read as text; error path only)."""
    if path.suffix == ".csv":
        text = pd.read_csv(path, usecols=[column], dtype=str, keep_default_na=False)
        return text[column].iat[row]
    return str(frame[column].iat[row])


def _class_index(frame: pd.DataFrame, column: str, classes: list[str], path: Path) -> pd.Series:
    numbers = _parse_numbers(frame, column, path)
    names = ", ".join(classes)
    missing = _first(numbers.isna())
    if missing is not None:
        raise ManifestError(path, f"is empty; every row needs a class index 0..{len(classes) - 1}",
                            row=missing, column=column)
    bad = _first(numbers != np.floor(numbers))
    if bad is not None:
        raise ManifestError(path, "is not an integer class index", row=bad, column=column,
                            value=_raw(frame, column, bad, path))
    bad = _first((numbers < 0) | (numbers >= len(classes)))
    if bad is not None:
        raise ManifestError(path, f"is not a class index 0..{len(classes) - 1} (classes: {names})",
                            row=bad, column=column, value=_raw(frame, column, bad, path))
    return numbers.astype("int64")


def _check_dist(frame: pd.DataFrame, out: pd.DataFrame, classes: list[str], path: Path) -> None:
    present = [c for c in frame.columns if c.startswith(schema.DIST_PREFIX)]
    if not present:
        return
    expected = [schema.DIST_PREFIX + c for c in classes]
    if sorted(present) != sorted(expected):
        missing = [c for c in expected if c not in present]
        extra = [c for c in present if c not in expected]
        raise ManifestError(path, f"dist_ columns do not match the classes: missing {missing}, "
                            f"unknown {extra} (expected {expected})")
    for column in expected:
        out[column] = _number(frame, column, path, low=0.0, high=np.inf, missing_ok=False)
    sums = out[expected].sum(axis=1)
    bad = _first((sums - 1.0).abs() > DIST_TOLERANCE)
    if bad is not None:
        raise ManifestError(path, f"dist_ values sum to {sums.iat[bad]:.6g}, not 1 "
                            f"(tolerance {DIST_TOLERANCE:g})", row=bad)


def _flag(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    col = frame[column]
    if pd.api.types.is_bool_dtype(col):
        return col.astype(bool)
    text = _as_text(frame, column).fillna("").str.strip().str.lower()
    truth = {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False}
    bad = _first(~text.isin(list(truth)))
    if bad is not None:
        raise ManifestError(path, "is not a boolean (True/False)", row=bad, column=column,
                            value=_raw(frame, column, bad, path))
    return text.map(truth).astype(bool)


def _check_images(manifest: Manifest) -> None:
    exists = np.fromiter(
        ((manifest.root / p).is_file() for p in manifest.frame[schema.PATH]),
        dtype=bool, count=len(manifest),
    )
    bad = _first(~exists)
    if bad is not None:
        missing = manifest.image_path(bad)
        raise ManifestError(manifest.path, f"points to a missing image file: {missing}",
                            row=bad, column=schema.PATH, value=manifest.frame[schema.PATH].iat[bad])
