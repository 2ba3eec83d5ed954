"""LDLVA's neighbours: the kNN search, VA of the training split, and the neighbour images the
data module delivers (forward mode) with their anchor's augmentation."""
from types import SimpleNamespace

import torch
from helpers import write_tiny_manifest

from ufer.data.datamodule import FERDataModule
from ufer.data.dataset import ManifestDataset
from ufer.data.manifest import read_manifest
from ufer.data.neighbours import nearest_neighbours

LINE = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [3.5, 0.0], [10.0, 0.0]])


def test_ldlva_knn_excludes_self_nearest_first():
    assert nearest_neighbours(LINE, 2).tolist() == [[1, 2], [0, 2], [3, 1], [2, 1], [3, 2]]


def test_ldlva_knn_invalid_points_and_too_few_neighbours():
    valid = torch.tensor([True, True, False, True, True])
    # point 2 has no VA: no neighbours, nobody's neighbour
    assert nearest_neighbours(LINE, 2, valid).tolist() == [[1, 3], [0, 3], [-1, -1], [1, 0],
                                                            [3, 1]]
    # 4 valid points: at most 3 neighbours each, the 4th column stays -1
    assert nearest_neighbours(LINE, 4, valid)[0].tolist() == [1, 3, 4, -1]


def test_ldlva_knn_keeps_a_duplicate_but_not_self():
    points = torch.tensor([[0.2, 0.2], [0.2, 0.2], [0.9, 0.9]])
    found = nearest_neighbours(points, 1)
    assert found[:2].tolist() == [[1], [0]] and found[2].item() in (0, 1)  # a tie for point 2


def test_ldlva_knn_matches_brute_force_over_chunks():
    g = torch.Generator().manual_seed(0)
    points = torch.randn(500, 2, generator=g)
    found = nearest_neighbours(points, 5, chunk_elements=2000)  # 4 rows per chunk
    dist = torch.cdist(points.double(), points.double()).fill_diagonal_(float("inf"))
    expected = dist.topk(5, largest=False).values
    torch.testing.assert_close(torch.gather(dist, 1, found), expected)


def test_ldlva_va_matrix_of_the_training_split(tmp_path):
    train = ManifestDataset(read_manifest(write_tiny_manifest(tmp_path, n=8)), split="train")
    va, known = train.va_matrix()
    assert va.shape == (4, 2) and known.tolist() == [True, False, True, True]  # row 1: no valence
    assert va[1, 0] == 0
    plain = ManifestDataset(read_manifest(write_tiny_manifest(tmp_path / "p", va=False)), "train")
    assert not plain.va_matrix()[1].any()


def test_ldlva_neighbour_images_get_their_anchors_augmentation(tmp_path):
    dm = FERDataModule(str(write_tiny_manifest(tmp_path, n=8)), batch_size=4, cache=False)
    dm.setup("fit")
    # neighbour 0 of every sample is the sample itself, neighbour 1 is sample 3 or none
    dm.neighbours = torch.stack([torch.arange(4), torch.tensor([3, 3, -1, 3])], dim=1)
    dm._trainer = SimpleNamespace(training=True, current_epoch=0, world_size=1, global_rank=0)
    batch = next(iter(dm.train_dataloader()))
    raw = {k: v.clone() for k, v in batch.items()}
    index = raw["index"]
    assert raw["neighbour_image"].shape == (4, 2, 3, 8, 8)
    assert torch.equal(raw["neighbour_image"][:, 0], raw["image"])
    for b, j in enumerate(dm.neighbours[index, 1].tolist()):
        expected = dm.train_set.image(j) if j >= 0 else torch.zeros(3, 8, 8, dtype=torch.uint8)
        assert torch.equal(raw["neighbour_image"][b, 1], expected)
    out = dm.on_after_batch_transfer(batch, 0)
    # the same draws: a sample's own image as its neighbour comes out identical ...
    torch.testing.assert_close(out["neighbour_image"][:, 0], out["image"], rtol=0, atol=0)
    # ... and the augmentation did something (flip, shift, jitter of the 8 px images)
    dm._trainer = SimpleNamespace(training=False)
    plain = dm.on_after_batch_transfer({k: v.clone() for k, v in raw.items()}, 0)
    assert not torch.equal(plain["image"], out["image"])
    torch.testing.assert_close(plain["neighbour_image"][:, 0], plain["image"], rtol=0, atol=0)
