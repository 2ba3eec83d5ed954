"""FERDataModule: manifest -> loaders, with batched augmentation after the device transfer.

Images travel as uint8 and become normalised floats on the device
(``on_after_batch_transfer``), where training batches are also augmented with a
generator seeded by (seed, epoch, first index of the batch): augmentation is
reproducible and a resumed run sees exactly the batches an uninterrupted run would.
Shuffling uses a ``DistributedSampler`` on one process too, seeded and set per epoch
by Lightning, for the same reason.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, DistributedSampler

from ufer.data import schema
from ufer.data.dataset import ManifestDataset
from ufer.data.manifest import Manifest, ManifestError, read_manifest
from ufer.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentConfig,
    augment_batch,
    normalize,
    to_float,
)

# FERMethod arguments that come from the data
METHOD_SIZES = ("num_classes", "num_train", "num_aus", "has_va", "class_names")


class FERDataModule(pl.LightningDataModule):
    """Loaders for the train / val / test splits of one manifest.

    Args:
        manifest: path of the manifest (CSV or Parquet with its JSON sidecar).
        image_size: square input size; None keeps the stored size.
        batch_size: training batch size (per process); eval_batch_size for val/test.
        num_workers: DataLoader workers (0 is best on a 2-core machine).
        augment: training augmentation (flip, shift, colour jitter, erasing).
        seed: shuffling and augmentation seed.
        cache: decode all images once into memory (True/False/"auto").
        val_split, test_split: split names used for validation and test.

    Attributes:
        normalization: (mean, std) applied to every batch; the method being trained sets it
            to its own (``FERMethod.setup``); ImageNet's until then.
        neighbours: (N_train, K) int64 training-split indices (-1 = none), or None. A method
            that wants each training sample's K neighbours' images sets it in
            ``setup_from_data``; training batches then carry ``neighbour_image``
            (B, K, 3, H, W), each neighbour augmented exactly like its anchor.
    """

    def __init__(self, manifest: str, image_size: int | None = None, batch_size: int = 128,
                 eval_batch_size: int = 256, num_workers: int = 0,
                 augment: AugmentConfig | None = None, seed: int = 0,
                 cache: bool | str = "auto", val_split: str = "val", test_split: str = "test"):
        super().__init__()
        check_sizes(image_size=image_size, batch_size=batch_size,
                    eval_batch_size=eval_batch_size, num_workers=num_workers)
        check_split_names(val_split=val_split, test_split=test_split)
        self.manifest_path = str(manifest)
        self.manifest: Manifest = read_manifest(manifest, check_images=False)
        self.image_size = image_size
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.seed, self.cache = num_workers, seed, cache
        self.augment = augment if augment is not None else AugmentConfig()
        self.val_split, self.test_split = val_split, test_split
        self._sets: dict[str, ManifestDataset] = {}
        self.normalization: tuple[tuple[float, ...], tuple[float, ...]] = (IMAGENET_MEAN,
                                                                            IMAGENET_STD)
        self.neighbours: torch.Tensor | None = None
        self.save_hyperparameters({"manifest": self.manifest_path, "image_size": image_size,
                                   "batch_size": batch_size, "seed": seed,
                                   "augment": asdict(self.augment)})

    # what the method needs to size itself (linked by `ufer train`)
    @property
    def num_classes(self) -> int:
        return self.manifest.num_classes

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest.classes)

    @property
    def num_train(self) -> int:
        return int((self.manifest.frame["split"] == "train").sum())

    @property
    def num_aus(self) -> int:
        return len(self.manifest.au_names)

    @property
    def has_va(self) -> bool:
        return self.manifest.has_va

    def method_sizes(self) -> dict[str, Any]:
        """What a method needs to size itself from this data: ``num_classes``, ``num_train``,
        ``num_aus``, ``has_va``, ``class_names`` (the keys ``ufer train`` links)."""
        return {name: getattr(self, name) for name in METHOD_SIZES}

    def dataset(self, split: str) -> ManifestDataset:
        """The dataset of one split, built once (on first use the image files are checked)."""
        if not self._sets:
            self.manifest = read_manifest(self.manifest_path, check_images=True)
        if split not in self._sets:
            self._sets[split] = ManifestDataset(self.manifest, split, self.image_size, self.cache)
        return self._sets[split]

    @property
    def train_set(self) -> ManifestDataset:
        return self.dataset("train")

    def split_size(self, split: str) -> int:
        """Rows of ``split`` in the manifest (0 when it has none)."""
        return int((self.manifest.frame["split"] == split).sum())

    def setup(self, stage: str) -> None:
        """Build the datasets of ``stage``; fitting without training rows is an error."""
        if stage == "fit" and not self.num_train:
            raise ManifestError(self.manifest_path, f"has no 'train' rows ("
                                f"{split_counts(self.manifest)}): nothing to train on; give a "
                                "manifest with a train split")
        splits = {"fit": ["train", self.val_split], "validate": [self.val_split],
                  "test": [self.test_split], "predict": [self.test_split]}[stage]
        for split in splits:
            if self.split_size(split):
                self.dataset(split)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        ds = self.dataset(split)
        trainer = self._trainer if hasattr(self, "_trainer") else None
        world = trainer.world_size if trainer is not None else 1
        rank = trainer.global_rank if trainer is not None else 0
        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=shuffle,
                                     seed=self.seed, drop_last=False)
        size = self.batch_size if shuffle else self.eval_batch_size
        return DataLoader(ds, batch_size=size, sampler=sampler, num_workers=self.num_workers,
                          drop_last=shuffle and len(ds) // world > size,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        self.train_set.neighbours = self.neighbours
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        if not self.split_size(self.val_split):
            return []
        return self._loader(self.val_split, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_split, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict:
        """uint8 images -> float in [0, 1] -> (augmented when training) -> normalised with
        ``self.normalization`` (the training-time form of ``transforms.preprocess``).
        Neighbour images (B, K, ...) get their anchor's augmentation: slice k is augmented
        from the same generator state as the anchors, so row b draws what anchor b drew."""
        trainer = self._trainer if hasattr(self, "_trainer") else None
        seed = None
        if trainer is not None and trainer.training:
            seed = hash((self.seed, trainer.current_epoch, int(batch["index"][0]))) % (2**63)
        batch["image"] = self._input(batch["image"], seed)
        if "neighbour_image" in batch:
            neighbours = batch["neighbour_image"]
            batch["neighbour_image"] = torch.stack(
                [self._input(neighbours[:, k], seed) for k in range(neighbours.shape[1])], dim=1)
        return batch

    def _input(self, images: torch.Tensor, seed: int | None) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> normalised float, augmented from a generator seeded with
        ``seed`` (None: not augmented)."""
        mean, std = self.normalization
        images = to_float(images)
        if seed is not None:
            generator = torch.Generator(device=images.device)
            generator.manual_seed(seed)
            images = augment_batch(images, self.augment, generator, fill=mean)
        return normalize(images, mean, std).contiguous(memory_format=torch.channels_last)


def check_sizes(**sizes: int | None) -> None:
    """``image_size`` may be None (keep the stored size); every size must be a positive
    integer (``num_workers`` may be 0)."""
    for name, value in sizes.items():
        low = 0 if name == "num_workers" else 1
        if value is None and name == "image_size":
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            extra = " or None (keep the stored size)" if name == "image_size" else ""
            raise ValueError(f"{name} must be an integer >= {low}{extra}, got {value!r}")


def split_counts(manifest: Manifest) -> str:
    """Rows per split in words, e.g. ``train 200, val 50`` (``no rows at all``)."""
    counts = manifest.frame["split"].value_counts()
    return ", ".join(f"{name} {counts[name]}" for name in schema.SPLITS if name in counts) \
        or "no rows at all"


def check_split_names(**splits: str) -> None:
    """Every split named must be one of the manifest schema's splits."""
    for name, value in splits.items():
        if value not in schema.SPLITS:
            raise ValueError(f"{name} {value!r} is not a split; a manifest's splits are "
                             f"{', '.join(schema.SPLITS)}")


def manifest_summary(path: str | Path) -> str:
    """A short human summary of a manifest: splits, classes, annotations."""
    m = read_manifest(path, check_images=False)
    lines = [f"{path}: {len(m)} images, {m.num_classes} classes ({', '.join(m.classes)})"]
    for split, part in m.frame.groupby("split", sort=False):
        counts = part["label"].value_counts().reindex(range(m.num_classes), fill_value=0)
        lines.append(f"  {split:5s} {len(part):6d}  per class: {counts.tolist()}")
    extras = [name for name, present in (("VA", m.has_va), ("AUs", bool(m.au_names)),
                                         ("votes", m.has_dist), ("clean_label", m.has_clean_label))
              if present]
    lines.append(f"  annotations: {', '.join(extras) or 'labels only'}")
    if m.meta.get("noise"):
        n = m.meta["noise"]
        lines.append(f"  noise: {n.get('protocol')} rate {n.get('rate')} seed {n.get('seed')} "
                     f"-> {n.get('flipped')} labels flipped")
    return "\n".join(lines)
