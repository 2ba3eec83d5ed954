"""AU and VA annotations joined to a manifest (``ufer annotate``), written as a NEW manifest.

AU sources:

- OpenFace 2.x CSVs (:func:`openface_aus`): one CSV per image, as ``FaceLandmarkImg``
  writes them (header ``face, confidence, ...``) or ``FeatureExtraction -f <image>``
  (``frame, face_id, timestamp, confidence, success, ...``); the ``", "`` separators are
  read as such. ``AUxx_c`` gives presence (0/1, 18 AUs incl. AU28), ``AUxx_r`` intensity
  (0..5, written divided by 5, 17 AUs). OpenFace 2.x has no AU24 (nor AU16). A face counts
  when ``success == 1`` (where the column exists) and ``confidence >= min_confidence``;
  with several faces the most confident one is taken. A CSV is joined to the image whose
  path ends like the CSV's path under the given folder (suffixes ignored).
- A generic table (:func:`table_aus`): ``path, AU01, AU02, ...`` with values in [0, 1].
- The emotion-AU prior (:func:`prior_aus`, ``data/au_prior.py``) applied to the manifest's
  ``label``: the label it trains on (after ``ufer noise``, the noisy one; never
  ``clean_label``). Marked weak in the sidecar: these are the labels restated, not AUs seen.

VA sources: a table ``path, valence, arousal`` (:func:`table_va`) or two columns already in
the manifest (:func:`column_va`), optionally rescaled linearly from [lo, hi] to [-1, 1].
VA is never derived from the class label.

Each source returns (values, info): a frame aligned with the manifest's rows (NaN where
unknown) and a JSON-ready description with coverage; :func:`write_annotated` writes the new
manifest, replacing the AU (or VA) columns the input had.
"""
from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from ufer.data import schema
from ufer.data.au_prior import CITATION, PRIOR_AUS, au_columns, au_targets
from ufer.data.manifest import Manifest, ManifestError, relocate_paths, write_manifest
from ufer.data.noise import check_output

OPENFACE_KINDS = {"presence": "c", "intensity": "r"}
OPENFACE_MAX_INTENSITY = 5.0
VA_COLUMNS = [schema.VALENCE, schema.AROUSAL]
_OPENFACE_AU = re.compile(r"^AU(\d\d)_([cr])$")


class ImageIndex:
    """Finds a manifest row from an image name written elsewhere (an OpenFace CSV's path, a
    table's ``path``): the row with the same file stem; when several rows share it, the one
    whose path ends with the same folders. Suffixes are ignored.

    Args:
        paths: the manifest's ``path`` column.
    """

    def __init__(self, paths: Iterable[str]) -> None:
        self._parts = [_parts(p) for p in paths]
        self._by_stem: dict[str, list[int]] = defaultdict(list)
        for row, parts in enumerate(self._parts):
            self._by_stem[parts[-1]].append(row)

    def find(self, name: str) -> int | None:
        """The row of ``name`` (``"Happy/x.csv"`` finds ``images/Train/Happy/x.png``), or None.

        Raises:
            ValueError: ``name`` fits several rows equally well.
        """
        key = _parts(name)
        rows = self._by_stem.get(key[-1], [])
        if len(rows) > 1:
            rows = [r for r in rows if self._parts[r][-len(key):] == key[-len(self._parts[r]):]]
            if len(rows) != 1:
                raise ValueError(f"{name!r} matches several images of the manifest; give a "
                                 "path with more of their folders")
        return rows[0] if rows else None


def _parts(name: str) -> tuple[str, ...]:
    return PurePosixPath(name.replace("\\", "/")).with_suffix("").parts


def coverage(values: pd.DataFrame, splits: pd.Series) -> dict[str, Any]:
    """Rows with at least one known value: count and share, overall and per split."""
    known = values.notna().any(axis=1)
    per_split = {s: round(float(known[splits == s].mean()), 4) for s in splits.unique()}
    return {"rows": len(values), "annotated": int(known.sum()),
            "share": round(float(known.mean()), 4) if len(values) else 0.0,
            "per_split": per_split}


# --- AU sources -------------------------------------------------------------------------------


def openface_aus(manifest: Manifest, source: str | Path, *, kind: str = "presence",
                 min_confidence: float = 0.8) -> tuple[pd.DataFrame, dict[str, Any]]:
    """AUs of every manifest image from OpenFace 2.x CSVs (see the module docstring).

    Args:
        manifest: the manifest to annotate.
        source: one OpenFace CSV, or a folder searched recursively for ``*.csv``.
        kind: ``presence`` (``AUxx_c``) or ``intensity`` (``AUxx_r`` / 5).
        min_confidence: faces below this OpenFace confidence are not used.

    Returns:
        (float frame (N, M) of ``AUxx`` columns, NaN where no usable face, sidecar info).
    """
    if kind not in OPENFACE_KINDS:
        raise ValueError(f"kind must be one of {list(OPENFACE_KINDS)}, got {kind!r}")
    source = Path(source)
    files = sorted(source.rglob("*.csv")) if source.is_dir() else [source]
    if not files or not files[0].is_file():
        raise FileNotFoundError(f"no OpenFace CSV at {source}")
    index = ImageIndex(manifest.frame[schema.PATH])
    found: dict[int, dict[str, float]] = {}
    counts = defaultdict(int)
    for file in files:
        name = file.relative_to(source).as_posix() if source.is_dir() else file.name
        row = index.find(name)
        if row is None:
            counts["csv files naming no manifest image"] += 1
            continue
        values = _openface_face(file, kind, min_confidence)
        if values is None:
            counts["images without a face passing the filters"] += 1
        else:
            found[row] = values
    if not found:
        raise ValueError(f"no usable face in the OpenFace CSVs at {source} for any image of "
                         f"{manifest.path} ({dict(counts)})")
    frame = _rows_frame(found, len(manifest))
    info = {"kind": "openface", "weak": False, "source": str(source), "columns": kind,
            "filters": {"success": 1, "min_confidence": min_confidence},
            "note": "OpenFace 2.x has no AU24 or AU16" + (
                "; intensities divided by 5" if kind == "intensity" else ""),
            "counts": dict(counts),
            "coverage": coverage(frame, manifest.frame[schema.SPLIT])}
    return frame, info


def _openface_face(file: Path, kind: str, min_confidence: float) -> dict[str, float] | None:
    """AU values of the most confident face of one OpenFace CSV passing the filters."""
    table = _read_csv(file, skipinitialspace=True)
    table.columns = [str(c).strip() for c in table.columns]
    suffix = OPENFACE_KINDS[kind]
    aus = {c: schema.au_column(int(m[1])) for c in table.columns
           if (m := _OPENFACE_AU.match(c)) and m[2] == suffix}
    if "confidence" not in table.columns or not aus:
        raise ManifestError(file, f"is not an OpenFace 2.x CSV: needs 'confidence' and AUxx_"
                            f"{suffix} columns (found {', '.join(table.columns[:8])}, ...)")
    if "frame" in table.columns and table["frame"].nunique() > 1:
        raise ManifestError(file, "holds several frames (FeatureExtraction on a sequence); "
                            "give one CSV per image, or a generic AU table (--csv)")
    numbers = _numbers(table, file, ["confidence", *aus] + (
        ["success"] if "success" in table.columns else []))
    usable = numbers["confidence"] >= min_confidence
    if "success" in numbers.columns:
        usable &= numbers["success"] == 1
    if not usable.any():
        return None
    best = numbers[usable]["confidence"].idxmax()
    scale = OPENFACE_MAX_INTENSITY if kind == "intensity" else 1.0
    values = {aus[c]: float(numbers.at[best, c]) / scale for c in aus}
    for column, value in values.items():
        if not 0.0 <= value <= 1.0:
            source_column = next(c for c, a in aus.items() if a == column)
            raise ManifestError(file, f"is outside the OpenFace range of AU{column[2:]}_{suffix}",
                                line=int(best) + 2, column=source_column,
                                value=numbers.at[best, source_column])
    return values


def _read_csv(file: Path, **kwargs: Any) -> pd.DataFrame:
    try:
        return pd.read_csv(file, **kwargs)
    except pd.errors.EmptyDataError:
        raise ManifestError(file, "is empty") from None
    except pd.errors.ParserError as exc:
        raise ManifestError(file, f"malformed CSV: {exc}") from None


def _numbers(table: pd.DataFrame, file: Path, columns: list[str]) -> pd.DataFrame:
    """``columns`` as floats; a cell that is not a number, or NaN, names its line."""
    out = pd.DataFrame(index=table.index)
    for column in columns:
        text = table[column].astype(str).str.strip()
        numbers = pd.to_numeric(text, errors="coerce")
        bad = np.flatnonzero(numbers.isna().to_numpy())
        if len(bad):
            row = int(bad[0])
            raise ManifestError(file, "is not a number", line=row + 2, column=column,
                                value=text.iat[row])
        out[column] = numbers.astype("float64")
    return out


def _rows_frame(found: dict[int, dict[str, float]], n: int) -> pd.DataFrame:
    """Per-row values -> frame (n, columns), NaN for rows without values; AU columns sorted."""
    columns = sorted({c for values in found.values() for c in values})
    frame = pd.DataFrame.from_dict(found, orient="index", columns=columns, dtype="float64")
    return frame.reindex(index=range(n))


def table_aus(manifest: Manifest, file: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """AUs from a table ``path, AU01, AU02, ...`` (values in [0, 1], empty = unknown)."""
    found, unmatched, columns = _read_table(manifest, Path(file), None, (0.0, 1.0), None)
    frame = _rows_frame(found, len(manifest)).reindex(columns=columns)
    info = {"kind": "table", "weak": False, "source": str(file),
            "counts": {"table rows naming no manifest image": unmatched},
            "coverage": coverage(frame, manifest.frame[schema.SPLIT])}
    return frame, info


def prior_aus(manifest: Manifest) -> tuple[pd.DataFrame, dict[str, Any]]:
    """AUs restated from the labels by the emotion-AU prior table (weak; see au_prior.py).

    Uses ``label``, the label the manifest trains on (noisy after ``ufer noise``), never
    ``clean_label``.
    """
    labels = manifest.frame[schema.LABEL].to_numpy()
    frame = pd.DataFrame(au_targets(labels, manifest.classes).astype(np.float64),
                         columns=au_columns(PRIOR_AUS))
    noise = manifest.meta.get("noise")
    info = {"kind": "prior", "weak": True, "table": CITATION, "from_column": schema.LABEL,
            "note": "derived from the class labels, not seen in the faces",
            "labels_noisy": noise is not None,
            "coverage": coverage(frame, manifest.frame[schema.SPLIT])}
    return frame, info


# --- VA sources -------------------------------------------------------------------------------


def table_va(manifest: Manifest, file: str | Path,
             scale: tuple[float, float] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Valence and arousal from a table ``path, valence, arousal``.

    Args:
        manifest: the manifest to annotate.
        file: the table (CSV).
        scale: (lo, hi) of the table's values, mapped linearly onto [-1, 1]; None when the
            values already lie in [-1, 1].
    """
    found, unmatched, _ = _read_table(manifest, Path(file), VA_COLUMNS, (-1.0, 1.0), scale)
    frame = _rows_frame(found, len(manifest)).reindex(columns=VA_COLUMNS)
    info = {"kind": "table", "source": str(file), "scale": scale,
            "counts": {"table rows naming no manifest image": unmatched},
            "coverage": coverage(frame, manifest.frame[schema.SPLIT])}
    return frame, info


def column_va(manifest: Manifest, columns: tuple[str, str],
              scale: tuple[float, float] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Valence and arousal from two columns already in the manifest (e.g. from ``--csv`` of
    ``ufer prepare folder``), rescaled from ``scale`` = (lo, hi) onto [-1, 1] if given."""
    missing = [c for c in columns if c not in manifest.frame.columns]
    if missing:
        raise ManifestError(manifest.path, f"has no column {missing} (columns: "
                            f"{', '.join(manifest.frame.columns)})")
    frame = pd.DataFrame({
        target: [_cell(text, column, (-1.0, 1.0), scale, manifest.path, row=row)
                 for row, text in enumerate(manifest.frame[column])]
        for target, column in zip(VA_COLUMNS, columns)}, dtype="float64")
    info = {"kind": "columns", "source": list(columns), "scale": scale,
            "coverage": coverage(frame, manifest.frame[schema.SPLIT])}
    return frame, info


def _cell(text: Any, column: str, bounds: tuple[float, float], scale: tuple[float, float] | None,
          file: Path, **where: int) -> float:
    """One cell as a float in ``bounds`` after rescaling; NaN for an empty cell. ``where``
    (``line=`` or ``row=``) locates it in error messages."""
    if text is None or (isinstance(text, float) and np.isnan(text)) or str(text).strip() == "":
        return np.nan
    try:
        value = float(text)
    except ValueError:
        raise ManifestError(file, "is not a number", column=column, value=text,
                            **where) from None
    if np.isnan(value):
        raise ManifestError(file, "is NaN; leave the cell empty for an unknown value",
                            column=column, value=text, **where)
    if scale is not None:
        lo, hi = scale
        value = (value - lo) / (hi - lo) * 2.0 - 1.0
    if not bounds[0] <= value <= bounds[1]:
        rescaled = "" if scale is None else f" after rescaling from [{scale[0]:g}, {scale[1]:g}]"
        raise ManifestError(file, f"is outside [{bounds[0]:g}, {bounds[1]:g}]{rescaled}",
                            column=column, value=text, **where)
    return value


def _read_table(manifest: Manifest, file: Path, columns: list[str] | None,
                bounds: tuple[float, float], scale: tuple[float, float] | None
                ) -> tuple[dict[int, dict[str, float]], int, list[str]]:
    """Rows of a ``path, <columns>`` CSV joined to the manifest.

    Args:
        columns: the value columns required, or None for every ``AUxx`` column present.

    Returns:
        (manifest row -> values, number of table rows naming no manifest image, columns).
    """
    index = ImageIndex(manifest.frame[schema.PATH])
    found: dict[int, dict[str, float]] = {}
    unmatched = 0
    header, lines = _table_lines(file)
    if columns is None:
        columns = [c for c in header if schema.is_au_column(c)]
    missing = [c for c in [schema.PATH, *columns] if c not in header]
    if missing or not columns:
        raise ManifestError(file, f"the header needs 'path' and {columns or 'AUxx columns'}; "
                            f"missing {missing or 'AU columns'} (found {header})", line=1)
    first_line: dict[int, int] = {}
    for line, cells in lines:
        record = dict(zip(header, cells))
        row = index.find(record[schema.PATH])
        if row is None:
            unmatched += 1
            continue
        if row in first_line:
            raise ManifestError(file, f"names the same image as line {first_line[row]}",
                                line=line, column=schema.PATH, value=record[schema.PATH])
        first_line[row] = line
        found[row] = {c: _cell(record[c], c, bounds, scale, file, line=line) for c in columns}
    if not found:
        raise ValueError(f"{file}: no row names an image of {manifest.path} ({unmatched} rows "
                         "read)")
    return found, unmatched, columns


def _table_lines(file: Path) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """(stripped header, (line, cells) of the non-empty rows), checking the field count."""
    if not file.is_file():
        raise FileNotFoundError(f"table not found: {file}")
    text = file.read_text(encoding="utf-8-sig").splitlines()
    reader = csv.reader(text, skipinitialspace=True)
    header = [h.strip() for h in next(reader, [])]

    def lines() -> Iterator[tuple[int, list[str]]]:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                raise ManifestError(file, f"has {len(cells)} fields, the header {len(header)}",
                                    line=reader.line_num, value=",".join(cells)[:80])
            yield reader.line_num, [c.strip() for c in cells]

    return header, lines()


# --- writing ----------------------------------------------------------------------------------


def write_annotated(manifest: Manifest, values: pd.DataFrame, info: dict[str, Any],
                    out: str | Path, *, what: str, overwrite: bool = False) -> Path:
    """Write ``manifest`` + ``values`` as the NEW manifest ``out``.

    Args:
        manifest: the input; never modified (``out`` may not be it or its sidecar).
        values: frame aligned with the manifest's rows: ``AUxx`` or ``valence``/``arousal``.
        info: the source's description, stored as sidecar ``au_source`` / ``va_source``.
        out: the new manifest (``.csv`` / ``.parquet``); image paths are rewritten relative to
            its folder.
        what: ``au`` (every AU column of the input is replaced) or ``va``.
        overwrite: replace an existing ``out`` (and its sidecar).

    Returns:
        ``out``.
    """
    if what not in ("au", "va"):
        raise ValueError(f"what must be 'au' or 'va', got {what!r}")
    out = Path(out)
    check_output(manifest.path, out, overwrite)
    frame = manifest.frame
    old = [c for c in frame.columns if schema.is_au_column(c)] if what == "au" else [
        c for c in VA_COLUMNS if c in frame.columns]
    frame = frame.drop(columns=old)
    frame = pd.concat([frame, values.set_axis(frame.index)], axis=1)
    frame[schema.PATH] = relocate_paths(frame[schema.PATH], manifest.root, out.parent)
    meta = {k: v for k, v in manifest.meta.items() if k not in ("counts", "format_version")}
    if what == "au":
        meta["aus"] = list(values.columns)
    meta[f"{what}_source"] = {**info, "replaced_columns": old}
    meta["annotated_from"] = str(manifest.path)
    return write_manifest(frame, meta, out)
