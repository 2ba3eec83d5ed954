"""The decode-free image cache (``ufer prepare --cache SIZE``): same pixels as decoding."""
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import CLASSES, tiny_frame
from PIL import Image

from ufer.data import schema
from ufer.data.cache import CACHE_KEY, cache_folder, cache_manifest
from ufer.data.datamodule import FERDataModule
from ufer.data.dataset import ManifestDataset
from ufer.data.manifest import Manifest, ManifestError, read_manifest, write_manifest

SIZE = 24


def _write_fixture(root: Path, n: int = 12) -> Path:
    """n images of mixed formats, modes and sizes (JPEG, grey PNG, RGBA PNG, tiny PNG)."""
    frame = tiny_frame(n)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        kind = i % 4
        rel = f"img/{i:03d}." + ("jpg" if kind == 0 else "png")
        side = (37 + 5 * i, 50 - i)
        pixels = rng.integers(0, 256, (side[1], side[0], 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        if kind == 1:
            image = image.convert("L")
        elif kind == 2:
            image = image.convert("RGBA")
        elif kind == 3:
            image = image.resize((9, 11))  # enlarged by the loader
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / rel)
        paths.append(rel)
    frame[schema.PATH] = paths
    return write_manifest(frame, {"classes": CLASSES, "aus": ["AU01", "AU12"]},
                          root / "manifest.csv")


def _batches(manifest: Path, split: str) -> list[dict]:
    """The normalised batches a model sees for one split (eval: no augmentation)."""
    dm = FERDataModule(str(manifest), image_size=SIZE, batch_size=4, eval_batch_size=4,
                       cache=False)
    loader = dm.val_dataloader() if split == "val" else dm.test_dataloader()
    return [dm.on_after_batch_transfer(batch, 0) for batch in loader]


def test_model_pipeline_sees_identical_tensors_from_files_and_cache(tmp_path):
    path = _write_fixture(tmp_path)
    decoded = {s: ManifestDataset(read_manifest(path), s, SIZE, cache=False)
               for s in schema.SPLITS}
    assert not any(ds.cached for ds in decoded.values())
    before = {s: _batches(path, s) for s in ("val", "test")}

    cache_manifest(path, SIZE)
    cached = {s: ManifestDataset(read_manifest(path), s, SIZE, cache=False)
              for s in schema.SPLITS}
    for split in schema.SPLITS:
        assert cached[split].cached
        assert len(cached[split]) == len(decoded[split]) > 0
        for i in range(len(decoded[split])):
            a, b = decoded[split][i], cached[split][i]
            assert b["image"].dtype == torch.uint8 and b["image"].shape == (3, SIZE, SIZE)
            assert torch.equal(a["image"], b["image"]), (split, i)
            assert torch.equal(a["label"], b["label"])
    for split in ("val", "test"):
        for x, y in zip(before[split], _batches(path, split), strict=True):
            assert torch.equal(x["image"], y["image"]) and x["image"].dtype == torch.float32
    # the training loader reads the cache too (its samples, unaugmented, are the same pixels)
    dm = FERDataModule(str(path), image_size=SIZE, batch_size=4, cache=False)
    assert dm.train_set.cached
    batch = next(iter(dm.train_dataloader()))
    for image, index in zip(batch["image"], batch["index"]):
        assert torch.equal(image, decoded["train"][int(index)]["image"])


def test_cache_files_and_sidecar_pointer(tmp_path):
    path = _write_fixture(tmp_path, n=8)
    index_path = cache_manifest(path, SIZE)
    folder = cache_folder(path, SIZE)
    assert index_path == folder / "index.json" and not list(folder.glob("*.partial"))
    images = np.load(folder / "images.npy", mmap_mode="r")
    assert isinstance(images, np.memmap)
    assert images.dtype == np.uint8 and images.shape == (8, 3, SIZE, SIZE)
    index = json.loads(index_path.read_text())
    assert index["count"] == 8 and index["size"] == SIZE
    assert index["paths"][0] == "../img/000.jpg"
    meta = json.loads(schema.sidecar_path(path).read_text())
    assert meta[CACHE_KEY] == {"index": "cache_24/index.json", "size": SIZE,
                               "absolute": str(index_path.resolve())}
    assert meta["classes"] == CLASSES and meta["aus"] == ["AU01", "AU12"]
    assert read_manifest(path).meta[CACHE_KEY]["size"] == SIZE


def test_other_image_size_decodes_the_files(tmp_path):
    path = _write_fixture(tmp_path, n=4)
    cache_manifest(path, SIZE)
    manifest = read_manifest(path)
    other = ManifestDataset(manifest, image_size=16, cache=False)
    assert not other.cached and other[0]["image"].shape == (3, 16, 16)


def test_noisy_copy_and_split_views_find_their_rows_by_path(tmp_path):
    """A manifest derived from the cached one (rows reordered, labels changed) uses the
    cache through its sidecar pointer and finds each image by path."""
    path = _write_fixture(tmp_path, n=8)
    cache_manifest(path, SIZE)
    manifest = read_manifest(path)
    frame = manifest.frame.iloc[::-1].reset_index(drop=True)
    frame[schema.LABEL] = (frame[schema.LABEL] + 1) % len(CLASSES)
    copy = write_manifest(frame, manifest.meta, tmp_path / "reversed.csv")
    reordered = ManifestDataset(read_manifest(copy), image_size=SIZE, cache=False)
    original = ManifestDataset(manifest, image_size=SIZE, cache=False)
    assert reordered.cached
    for i in range(8):
        assert torch.equal(reordered[i]["image"], original[7 - i]["image"])


def test_manifest_derived_into_another_folder_still_uses_the_cache(tmp_path):
    """`ufer noise --out elsewhere/` relocates the image paths and carries the sidecar."""
    from ufer.data.manifest import relocate_paths

    path = _write_fixture(tmp_path / "data", n=6)
    cache_manifest(path, SIZE)
    manifest = read_manifest(path)
    other = tmp_path / "runs" / "noisy"
    other.mkdir(parents=True)
    frame = manifest.frame.assign(**{schema.PATH: relocate_paths(
        manifest.frame[schema.PATH], manifest.root, other)})
    moved = read_manifest(write_manifest(frame, manifest.meta, other / "m.csv"))
    derived = ManifestDataset(moved, image_size=SIZE, cache=False)
    original = ManifestDataset(manifest, image_size=SIZE, cache=False)
    assert derived.cached
    for i in range(6):
        assert torch.equal(derived[i]["image"], original[i]["image"])


def test_changed_image_is_an_error(tmp_path):
    path = _write_fixture(tmp_path, n=4)
    cache_manifest(path, SIZE)
    target = tmp_path / "img/001.png"
    Image.new("RGB", (30, 30), (1, 2, 3)).save(target)
    os.utime(target, ns=(1, 1))
    with pytest.raises(ManifestError, match=r"img/001\.png changed after the cache"):
        ManifestDataset(read_manifest(path), image_size=SIZE)


def test_row_missing_from_the_cache_and_missing_index(tmp_path):
    path = _write_fixture(tmp_path, n=4)
    cache_manifest(path, SIZE)
    manifest = read_manifest(path)
    Image.new("RGB", (20, 20)).save(tmp_path / "img/new.png")
    extra = manifest.frame.iloc[:1].assign(**{schema.PATH: "img/new.png"})
    grown = write_manifest(pd.concat([manifest.frame, extra], ignore_index=True),
                           manifest.meta, tmp_path / "grown.csv")
    with pytest.raises(ManifestError, match=r"grown\.csv, row 4 .*img/new\.png is not in the "
                                            r"cache"):
        ManifestDataset(read_manifest(grown), image_size=SIZE)
    (cache_folder(path, SIZE) / "index.json").unlink()
    with pytest.raises(ManifestError, match="points to a missing cache index"):
        ManifestDataset(read_manifest(path), image_size=SIZE)


def test_corrupt_image_stops_caching_with_its_name(tmp_path):
    path = _write_fixture(tmp_path, n=4)
    (tmp_path / "img/002.png").write_bytes(b"not a png")
    with pytest.raises(ManifestError, match=r"row 2 .*img/002\.png"):
        cache_manifest(path, SIZE)
    assert not (cache_folder(path, SIZE) / "index.json").exists()
    assert CACHE_KEY not in read_manifest(path).meta


def test_cached_dataset_pickles_without_its_pixels(tmp_path):
    path = _write_fixture(tmp_path, n=12)
    cache_manifest(path, 64)
    ds = ManifestDataset(read_manifest(path), image_size=64)
    first = ds[0]["image"]  # opens the memory map in this process
    blob = pickle.dumps(ds)
    assert len(blob) < 12 * 3 * 64 * 64  # the map is reopened, not copied, by workers
    assert torch.equal(pickle.loads(blob)[0]["image"], first)


def test_prepare_folder_with_detect_and_cache(tmp_path, capsys):
    """`ufer prepare folder ROOT OUT --detect --cache 48`: aligned faces, the template in
    the sidecar, the face-free photo dropped and counted, training reads the cache."""
    from skimage import data

    from ufer.cli.main import main

    root = tmp_path / "photos"
    for rel, pixels in (("happy/astronaut.jpg", data.astronaut()),
                        ("happy/mirrored.png", data.astronaut()[:, ::-1]),
                        ("neutral/coffee.jpg", data.coffee())):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(pixels)).save(root / rel)
    out = tmp_path / "prepared"
    assert main(["prepare", "folder", str(root), str(out), "--detect", "--size", "96",
                 "--cache", "48"]) == 0
    assert "image cache (48 px)" in capsys.readouterr().out
    manifest = read_manifest(out / "manifest.csv")
    assert sorted(manifest.frame[schema.PATH]) == ["images/happy/astronaut.png",
                                                   "images/happy/mirrored.png"]
    prepared = manifest.meta["prepare"]
    assert prepared["dropped"] == {"no face detected": 1}
    aligned = prepared["images"]["aligned"]
    assert aligned["template"]["name"] == "arcface_112" and aligned["size"] == 96
    assert Image.open(out / "images/happy/astronaut.png").size == (96, 96)
    ds = ManifestDataset(manifest, image_size=48, cache=False)
    assert ds.cached
    decoded = ManifestDataset(Manifest(manifest.frame, {"classes": manifest.classes},
                                       manifest.path), image_size=48, cache=False)
    for i in range(len(ds)):
        assert torch.equal(ds[i]["image"], decoded[i]["image"])
    # the mirrored photo's aligned crop is close to the mirror of the original's (detector
    # noise aside): much closer than to the unmirrored crop
    a, b = (np.asarray(Image.open(out / p), dtype=int) for p in
            ("images/happy/astronaut.png", "images/happy/mirrored.png"))
    assert np.abs(a[:, ::-1] - b).mean() < 0.5 * np.abs(a - b).mean()
