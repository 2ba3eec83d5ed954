"""ManifestDataset: item contract (keys, dtypes, shapes, masks), caching and image errors."""
from __future__ import annotations

import pytest
import torch
from helpers import write_tiny_manifest
from PIL import Image

from ufer.data.dataset import ManifestDataset
from ufer.data.manifest import ManifestError, read_manifest

FULL_KEYS = {"image", "label", "index", "va", "va_mask", "au", "au_mask", "dist", "clean_label"}


def test_item_contract_with_all_columns(tmp_path):
    ds = ManifestDataset(read_manifest(write_tiny_manifest(tmp_path)), image_size=12)
    assert len(ds) == 6 and not isinstance(ds.labels, list)
    item = ds[1]
    assert set(item) == FULL_KEYS
    expected = {
        "image": (torch.uint8, (3, 12, 12)), "label": (torch.int64, ()),
        "index": (torch.int64, ()), "va": (torch.float32, (2,)), "va_mask": (torch.bool, ()),
        "au": (torch.float32, (2,)), "au_mask": (torch.bool, (2,)),
        "dist": (torch.float32, (7,)), "clean_label": (torch.int64, ()),
    }
    assert {k: (v.dtype, tuple(v.shape)) for k, v in item.items()} == expected
    assert item["index"] == 1 and item["label"] == 1 and item["clean_label"] == 2
    # row 1: valence unknown -> va masked and zero-filled; AUs in sidecar order AU01, AU12
    assert not item["va_mask"] and item["va"][0] == 0
    assert torch.equal(item["au"], torch.tensor([0.25, 1.0]))
    assert ds[0]["va_mask"] and torch.allclose(ds[0]["va"], torch.tensor([-1.0, 0.5]))
    au_row2, au_row3 = ds[2], ds[3]
    assert au_row2["au_mask"].tolist() == [True, False] and au_row2["au"][1] == 0
    assert au_row3["au_mask"].tolist() == [False, True]
    assert torch.allclose(item["dist"].sum(), torch.tensor(1.0))


def test_item_without_optional_columns(tmp_path):
    path = write_tiny_manifest(tmp_path, va=False, au=False, dist=False, clean=False)
    ds = ManifestDataset(read_manifest(path), split="train")
    assert len(ds) == 4 and ds.clean_labels is None and ds.au_names == []
    item = ds[3]
    assert set(item) == {"image", "label", "index"}
    assert item["image"].shape == (3, 8, 8) and item["index"] == 3 and item["label"] == 5
    au, mask = ds.au_matrix()
    assert au.shape == (4, 0) and mask.shape == (4, 0)


def test_split_indices_and_au_matrix(tmp_path):
    ds = ManifestDataset(read_manifest(write_tiny_manifest(tmp_path)), split="train")
    assert ds.labels.tolist() == [0, 1, 4, 5]
    assert ds.clean_labels.tolist() == [1, 2, 5, 6]
    assert [int(ds[i]["index"]) for i in range(len(ds))] == [0, 1, 2, 3]
    au, mask = ds.au_matrix()
    assert au.dtype == torch.float32 and mask.dtype == torch.bool and au.shape == (4, 2)
    assert mask.all()


def test_cache_true_and_false_give_identical_items(tmp_path):
    m = read_manifest(write_tiny_manifest(tmp_path, size=10))
    cached = ManifestDataset(m, image_size=7, cache=True)
    lazy = ManifestDataset(m, image_size=7, cache=False)
    auto = ManifestDataset(m, cache="auto")
    assert cached.cached and not lazy.cached and auto.cached
    for i in range(len(m)):
        a, b = cached[i], lazy[i]
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert auto[0]["image"].shape == (3, 10, 10)


def test_shrinking_averages_area(tmp_path):
    ds = ManifestDataset(read_manifest(write_tiny_manifest(tmp_path, size=8)), image_size=4)
    image = ds[0]["image"]
    # pixel (0, 0) is pure red in an otherwise flat image: the 2x2 block average keeps 1/4 of it
    assert image[0, 0, 0] == round((255 + 3 * 0) / 4)
    assert image[0, 1, 1] == 0


def test_missing_image_names_manifest_row_and_path(tmp_path):
    path = write_tiny_manifest(tmp_path)
    m = read_manifest(path)
    (tmp_path / "img/004.png").unlink()
    ds = ManifestDataset(m, split="train", cache=False)
    with pytest.raises(ManifestError, match=r"m\.csv, row 4 \(line 6\), column 'path': value "
                                            r"'img/004\.png' points to a missing image file: "
                                            r".*img/004"):
        ds[2]
    with pytest.raises(ManifestError, match=r"row 4 \(line 6\)"):
        ManifestDataset(m, split="train", cache=True)


def test_corrupt_image_names_manifest_row_and_path(tmp_path):
    path = write_tiny_manifest(tmp_path)
    (tmp_path / "img/005.png").write_bytes(b"not a png at all")
    ds = ManifestDataset(read_manifest(path), cache=False)
    with pytest.raises(ManifestError, match=r"m\.csv, row 5 \(line 7\), column 'path': value "
                                            r"'img/005\.png' points to an image that cannot "
                                            r"be decoded: .*img/005\.png"):
        ds[5]


def test_mixed_sizes_need_image_size_to_cache(tmp_path):
    path = write_tiny_manifest(tmp_path, size=8)
    Image.new("RGB", (9, 8)).save(tmp_path / "img/003.png")
    m = read_manifest(path)
    with pytest.raises(ManifestError, match=r"row 3 .*differs from the first image's"):
        ManifestDataset(m, cache=True)
    assert ManifestDataset(m, image_size=8, cache=True)[3]["image"].shape == (3, 8, 8)


def test_default_collate_batches_the_dicts(tmp_path):
    ds = ManifestDataset(read_manifest(write_tiny_manifest(tmp_path)), "train", image_size=8)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert set(batch) == FULL_KEYS
    assert batch["image"].shape == (3, 3, 8, 8) and batch["index"].tolist() == [0, 1, 2]
    assert batch["va_mask"].shape == (3,) and batch["au_mask"].shape == (3, 2)
