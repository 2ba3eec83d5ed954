"""Decode-free image cache: a manifest's images decoded and resized once into one uint8
file that training memory-maps (no JPEG decoding, nothing held in RAM beyond the pages
the OS keeps).

A cache folder (``cache_<SIZE>/`` beside the manifest) holds:

- ``images.npy``: uint8 (N, 3, SIZE, SIZE), RGB, NCHW, in numpy's ``.npy`` format
  (``np.load(path, mmap_mode="r")`` opens it without reading it).
- ``index.json``: ``format``, ``version``, ``size``, ``count``, ``resize`` (how pixels
  were made) and per row the image ``paths`` (relative to the cache folder), file
  ``bytes`` and ``mtime_ns`` at caching time, so that a changed image is noticed.

The manifest's sidecar points to it under :data:`CACHE_KEY`:
``{"image_cache": {"index": "cache_112/index.json", "absolute": "/.../cache_112/index.json",
"size": 112}}``: ``index`` relative to the manifest's folder (the dataset folder can move),
``absolute`` for manifests derived from this one (noise, annotations) that carry the
sidecar into another folder. :class:`ManifestDataset` then reads images from the cache
when its ``image_size`` equals the cache's size, finding each row by its image's path;
pixels are exactly those that decoding the files at that size gives (the cache is written
through the dataset's own decoding).
"""
from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ufer.data import schema
from ufer.data.manifest import Manifest, ManifestError, read_manifest

CACHE_KEY = "image_cache"
CACHE_FORMAT = "ufer-image-cache"
CACHE_VERSION = 1
IMAGES_FILE = "images.npy"
INDEX_FILE = "index.json"
RESIZE_RULE = ("ufer.data.transforms.load_image_tensor: RGB, box filter when shrinking, "
               "bilinear when enlarging")
_CHUNK = 256  # images decoded per thread-pool round

log = logging.getLogger(__name__)


def cache_folder(manifest_path: str | Path, size: int) -> Path:
    """Where ``cache_manifest`` writes the cache of this manifest at this size."""
    return Path(manifest_path).parent / f"cache_{size}"


def build_cache(manifest: Manifest, folder: str | Path, size: int, workers: int = 2) -> Path:
    """Decode every image of ``manifest`` once at ``size`` x ``size`` and write the cache.

    Decoding goes through ``ManifestDataset`` (the training loader's own path), so a row's
    cached pixels equal what the loader decodes from the file. ``images.npy`` is written
    through a memory map (never all in RAM) under a temporary name; ``index.json`` is
    written last, so a folder with an index is complete.

    Args:
        manifest: a validated manifest (all splits are cached).
        folder: output folder (created).
        size: square side in pixels, >= 1.
        workers: decoding threads (PIL releases the GIL while decoding).

    Returns:
        The path of ``index.json``.

    Raises:
        ManifestError: an image is missing or cannot be decoded (names manifest, row, file).
    """
    from ufer.data.dataset import ManifestDataset  # the dataset imports this module

    if size < 1:
        raise ValueError(f"cache size must be a positive number of pixels, got {size}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plain = Manifest(frame=manifest.frame,
                     meta={k: v for k, v in manifest.meta.items() if k != CACHE_KEY},
                     path=manifest.path)
    dataset = ManifestDataset(plain, image_size=size, cache=False)
    n = len(dataset)
    partial = folder / (IMAGES_FILE + ".partial")
    images = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8,
                                       shape=(n, 3, size, size))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, n, _CHUNK):
            rows = range(start, min(n, start + _CHUNK))
            for i, item in zip(rows, pool.map(dataset.__getitem__, rows)):
                images[i] = item["image"].numpy()
    images.flush()
    del images
    os.replace(partial, folder / IMAGES_FILE)
    files = [manifest.image_path(i) for i in range(n)]
    stats = [f.stat() for f in files]
    index = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "size": size, "count": n,
             "layout": "uint8 (N, 3, size, size) RGB", "resize": RESIZE_RULE,
             "paths": [Path(os.path.relpath(f, folder)).as_posix() for f in files],
             "bytes": [s.st_size for s in stats], "mtime_ns": [s.st_mtime_ns for s in stats]}
    index_path = folder / INDEX_FILE
    partial_index = folder / (INDEX_FILE + ".partial")
    partial_index.write_text(json.dumps(index) + "\n")
    os.replace(partial_index, index_path)
    return index_path


def cache_manifest(manifest_path: str | Path, size: int, workers: int = 2) -> Path:
    """Cache a manifest's images at ``size`` beside it and point its sidecar to the cache.

    Writes ``cache_<size>/`` (see :func:`build_cache`) and adds
    ``"image_cache": {"index": ..., "absolute": ..., "size": size}`` to the sidecar (other
    keys kept).

    Returns:
        The path of the cache's ``index.json``.
    """
    manifest = read_manifest(manifest_path)
    index_path = build_cache(manifest, cache_folder(manifest.path, size), size, workers)
    sidecar = schema.sidecar_path(manifest.path)
    meta = json.loads(sidecar.read_text())
    rel = Path(os.path.relpath(index_path, manifest.root)).as_posix()
    meta[CACHE_KEY] = {"index": rel, "absolute": str(index_path.resolve()), "size": size}
    sidecar.write_text(json.dumps(meta, indent=2) + "\n")
    return index_path


@dataclass
class CachedImages:
    """Images of some manifest rows, read from a cache file.

    ``self[i]`` is a new uint8 tensor (3, size, size) for row ``i`` of the manifest view it
    was opened for. The memory map is opened lazily in each process and is not pickled
    (DataLoader workers reopen it).

    Attributes:
        images_path: the cache's ``images.npy``.
        rows: int64 (N,): cache row of each manifest row.
        size: square side of the cached images.
    """

    images_path: Path
    rows: np.ndarray
    size: int
    _array: np.ndarray | None = field(default=None, init=False, repr=False)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Tensor:
        if self._array is None:
            self._array = np.load(self.images_path, mmap_mode="r")
        return torch.from_numpy(np.array(self._array[self.rows[i]]))

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}


def open_manifest_cache(manifest: Manifest, image_size: int | None) -> CachedImages | None:
    """The cached images of ``manifest``'s rows, or None when they should be decoded.

    None when the sidecar names no cache, or when ``image_size`` differs from the cache's
    size (logged: the files are decoded at ``image_size`` instead).

    Raises:
        ManifestError: the sidecar's pointer is malformed, the index or image file is
            missing or not a ufer cache, a row's image is not in the cache, or an image
            file changed (size or modification time) since it was cached.
    """
    pointer = manifest.meta.get(CACHE_KEY)
    if pointer is None:
        return None
    sidecar = schema.sidecar_path(manifest.path)
    if not isinstance(pointer, dict) or not isinstance(pointer.get("index"), str) \
            or not isinstance(pointer.get("size"), int):
        raise ManifestError(sidecar, f"'{CACHE_KEY}' must be {{\"index\": path, \"size\": int}}, "
                            f"got {pointer!r}")
    if pointer["size"] != image_size:
        log.info("%s: image cache at %s px not used for image_size %s; decoding the image "
                 "files", manifest.path, pointer["size"], image_size)
        return None
    index_path = _find_index(manifest, pointer, sidecar)
    index = _read_index(index_path)
    folder = index_path.parent
    images_path = folder / IMAGES_FILE
    if not images_path.is_file():
        raise ManifestError(index_path, f"cache image file {images_path} is missing")
    shape = (index["count"], 3, index["size"], index["size"])
    found = np.load(images_path, mmap_mode="r")
    if found.dtype != np.uint8 or found.shape != shape:
        raise ManifestError(images_path, f"holds {found.dtype} {found.shape}, the index says "
                            f"uint8 {shape}; rebuild the cache")
    known = {os.path.abspath(folder / p): k for k, p in enumerate(index["paths"])}
    rows = np.empty(len(manifest), dtype=np.int64)
    for i in range(len(manifest)):
        file = manifest.image_path(i)
        row = known.get(os.path.abspath(file))
        if row is None:
            raise _row_error(manifest, i, f"image {file} is not in the cache {index_path}; "
                             "rebuild it (ufer prepare ... --cache SIZE)")
        stat = file.stat()
        if (stat.st_size, stat.st_mtime_ns) != (index["bytes"][row], index["mtime_ns"][row]):
            raise _row_error(manifest, i, f"image {file} changed after the cache "
                             f"{index_path} was written; rebuild it (ufer prepare ... --cache "
                             "SIZE)")
        rows[i] = row
    return CachedImages(images_path=images_path, rows=rows, size=index["size"])


def _find_index(manifest: Manifest, pointer: dict[str, Any], sidecar: Path) -> Path:
    """The cache index a sidecar names: relative to the manifest's folder, else at the
    absolute path recorded when the cache was written."""
    candidates = [manifest.root / pointer["index"]]
    if isinstance(pointer.get("absolute"), str):
        candidates.append(Path(pointer["absolute"]))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ManifestError(sidecar, f"'{CACHE_KEY}' points to a missing cache index "
                        f"{' or '.join(map(str, candidates))}")


def _read_index(index_path: Path) -> dict[str, Any]:
    """The parsed, checked ``index.json`` of a cache."""
    try:
        index = json.loads(index_path.read_text())
    except json.JSONDecodeError as exc:
        raise ManifestError(index_path, f"is not valid JSON: {exc}", line=exc.lineno) from exc
    if not isinstance(index, dict) or index.get("format") != CACHE_FORMAT:
        raise ManifestError(index_path, f"is not a ufer image cache index (format "
                            f"{CACHE_FORMAT!r})")
    if index.get("version") != CACHE_VERSION:
        raise ManifestError(index_path, f"cache version {index.get('version')!r} is not "
                            f"{CACHE_VERSION}; rebuild it")
    n = index.get("count")
    if not isinstance(n, int) or not isinstance(index.get("size"), int):
        raise ManifestError(index_path, "needs integer 'count' and 'size'")
    if not all(len(index.get(k, [])) == n for k in ("paths", "bytes", "mtime_ns")):
        raise ManifestError(index_path, f"'paths', 'bytes' and 'mtime_ns' must each hold "
                            f"count={n} entries")
    return index


def _row_error(manifest: Manifest, i: int, problem: str) -> ManifestError:
    return ManifestError(manifest.path, problem, row=manifest.source_row(i), column=schema.PATH,
                         value=manifest.frame[schema.PATH].iat[i])
