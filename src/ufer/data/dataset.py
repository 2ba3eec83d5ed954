"""``ManifestDataset``: the rows of a validated manifest as dicts of tensors.

All tabular columns are turned into tensors once, at construction; ``__getitem__`` only
indexes tensors and decodes (or looks up) one image. Augmentation and normalisation run
later, on whole batches (``data/transforms.py``).
"""
from __future__ import annotations

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ufer.data import schema
from ufer.data.cache import open_manifest_cache
from ufer.data.manifest import Manifest, ManifestError
from ufer.data.transforms import load_image_tensor

CACHE_LIMIT_BYTES = 2 * 1024**3  # cache="auto" keeps all decoded images below this size


class ManifestDataset(Dataset):
    """Images and annotations of one manifest (or one of its splits).

    Item ``i`` is a dict:

    - ``image``: uint8 (3, H, W) RGB, H = W = ``image_size`` when given.
    - ``label``: int64 scalar; ``index``: int64 scalar ``i`` (position in this dataset).
    - with VA columns: ``va`` float32 (2,) (missing -> 0), ``va_mask`` bool scalar (both known).
    - with AU columns: ``au`` float32 (M,) (missing -> 0), ``au_mask`` bool (M,).
    - with ``dist_*`` columns: ``dist`` float32 (C,).
    - with ``clean_label``: ``clean_label`` int64 scalar.
    - with ``neighbours`` set: ``neighbour_image`` uint8 (K, 3, H, W), the images of row i's
      K neighbours ``neighbours[i]`` (zeros where the index is -1).

    Args:
        manifest: a validated manifest (``read_manifest``).
        split: keep only this split (``train``/``val``/``test``); None keeps all rows.
        image_size: resize every image to this square side; None keeps the stored size.
        cache: ignored when the sidecar points to an image cache of ``image_size``
            (``ufer prepare --cache``), which is then memory-mapped instead of decoding.
            True decodes every image once, now, into one uint8 tensor (N, 3, H, W)
            (needs ``image_size`` or images of equal size); False decodes on access;
            ``"auto"`` caches when N * 3 * H * W (estimated from the first image) < 2 GiB.
    """

    def __init__(self, manifest: Manifest, split: str | None = None,
                 image_size: int | None = None, cache: bool | str = "auto") -> None:
        self.manifest = manifest.split(split) if split is not None else manifest
        self.image_size = image_size
        frame = self.manifest.frame
        self.classes = self.manifest.classes
        self.au_names = self.manifest.au_names
        self.labels = torch.tensor(frame[schema.LABEL].to_numpy(), dtype=torch.int64)
        self.clean_labels = (
            torch.tensor(frame[schema.CLEAN_LABEL].to_numpy(), dtype=torch.int64)
            if self.manifest.has_clean_label else None
        )
        self._va = self._va_mask = None
        if self.manifest.has_va:
            self._va, known = self._masked([schema.VALENCE, schema.AROUSAL])
            self._va_mask = known.all(dim=1)
        self._au, self._au_mask = self._masked(self.au_names)
        self._dist = (torch.tensor(frame[self.manifest.dist_columns].to_numpy(),
                                   dtype=torch.float32) if self.manifest.has_dist else None)
        # a sidecar's image cache at image_size (data/cache.py) replaces decoding
        disk = open_manifest_cache(self.manifest, image_size)
        self._images = disk if disk is not None else (
            self._build_cache() if self._should_cache(cache) else None)
        #: (N, K) int64 indices into this dataset, or None: set it (``FERDataModule`` does, at
        #: a method's request) and every item carries its neighbours' images
        self.neighbours: Tensor | None = None

    def __len__(self) -> int:
        return len(self.manifest)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        item = {
            "image": self.image(i),
            "label": self.labels[i],
            "index": torch.tensor(i, dtype=torch.int64),
        }
        if self._va_mask is not None:
            item["va"], item["va_mask"] = self._va[i], self._va_mask[i]
        if self.au_names:
            item["au"], item["au_mask"] = self._au[i], self._au_mask[i]
        if self._dist is not None:
            item["dist"] = self._dist[i]
        if self.clean_labels is not None:
            item["clean_label"] = self.clean_labels[i]
        if self.neighbours is not None:
            item["neighbour_image"] = torch.stack([
                self.image(int(j)) if j >= 0 else torch.zeros_like(item["image"])
                for j in self.neighbours[i]])
        return item

    def image(self, i: int) -> Tensor:
        """The uint8 (3, H, W) image of row ``i`` (from memory, the image cache or its file)."""
        return self._images[i] if self._images is not None else self._load(i)

    @property
    def cached(self) -> bool:
        """True when images come from memory or the image cache, not from decoding files."""
        return self._images is not None

    def au_matrix(self) -> tuple[Tensor, Tensor]:
        """AU targets of all rows: (au float32 (N, M), missing -> 0; mask bool (N, M))."""
        return self._au, self._au_mask

    def va_matrix(self) -> tuple[Tensor, Tensor]:
        """Valence and arousal of all rows: (va float32 (N, 2), missing -> 0; mask bool (N,),
        True where both are known; all False without VA columns)."""
        if self._va is None:
            return torch.zeros(len(self), 2), torch.zeros(len(self), dtype=torch.bool)
        return self._va, self._va_mask

    def _masked(self, columns: list[str]) -> tuple[Tensor, Tensor]:
        """float32 (N, len(columns)) with NaN -> 0, and the known-value mask."""
        values = torch.tensor(self.manifest.frame[columns].to_numpy(dtype="float64"),
                              dtype=torch.float32).reshape(len(self), len(columns))
        known = ~torch.isnan(values)
        return torch.where(known, values, torch.zeros(())), known

    def _load(self, i: int) -> Tensor:
        path = self.manifest.image_path(i)
        try:
            return load_image_tensor(path, self.image_size)
        except FileNotFoundError as exc:
            raise self._image_error(i, f"points to a missing image file: {path}") from exc
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            problem = f"points to an image that cannot be decoded: {path} ({exc})"
            raise self._image_error(i, problem) from exc

    def _image_error(self, i: int, problem: str) -> ManifestError:
        return ManifestError(self.manifest.path, problem, row=self.manifest.source_row(i),
                             column=schema.PATH, value=self.manifest.frame[schema.PATH].iat[i])

    def _should_cache(self, cache: bool | str) -> bool:
        if cache not in (True, False, "auto"):
            raise ValueError(f"cache must be True, False or 'auto', got {cache!r}")
        if len(self) == 0:
            return False
        if cache != "auto":
            return bool(cache)
        if self.image_size is not None:
            height = width = self.image_size
        else:
            height, width = self._load(0).shape[1:]
        return len(self) * 3 * height * width < CACHE_LIMIT_BYTES

    def _build_cache(self) -> Tensor:
        first = self._load(0)
        images = torch.empty((len(self), *first.shape), dtype=torch.uint8)
        images[0] = first
        for i in range(1, len(self)):
            image = self._load(i)
            if image.shape != first.shape:
                raise self._image_error(
                    i, f"image size {tuple(image.shape[1:])} differs from the first image's "
                    f"{tuple(first.shape[1:])}; pass image_size to cache images of mixed sizes")
            images[i] = image
        return images
