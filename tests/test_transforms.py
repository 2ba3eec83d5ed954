"""Batched augmentation: identity, reproducibility, flip/shift semantics, value range."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ufer.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentConfig,
    augment_batch,
    load_image_tensor,
    normalize,
    to_float,
)

IDENTITY = AugmentConfig(flip=0, shift=0, brightness=0, contrast=0, saturation=0, erase=0)


def _batch(b: int = 8, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_identity_config_returns_input():
    x = _batch()
    assert torch.equal(augment_batch(x, IDENTITY, _gen(0)), x)


def test_same_seed_same_output_other_seed_differs():
    x, cfg = _batch(), AugmentConfig()
    a = augment_batch(x, cfg, _gen(1))
    assert torch.equal(a, augment_batch(x, cfg, _gen(1)))
    assert not torch.equal(a, augment_batch(x, cfg, _gen(2)))


def test_resuming_generator_state_reproduces_next_batch():
    x, cfg, g = _batch(), AugmentConfig(), _gen(3)
    augment_batch(x, cfg, g)
    state = g.get_state()
    second = augment_batch(x, cfg, g)
    g.set_state(state)
    assert torch.equal(augment_batch(x, cfg, g), second)


def test_input_not_modified():
    x = _batch()
    before = x.clone()
    augment_batch(x, AugmentConfig(erase=1.0), _gen(0))
    assert torch.equal(x, before)


def test_flip_with_p1_equals_torch_flip():
    x = _batch()
    cfg = AugmentConfig(flip=1.0, shift=0, brightness=0, contrast=0, saturation=0, erase=0)
    assert torch.equal(augment_batch(x, cfg, _gen(0)), torch.flip(x, dims=[-1]))


def test_shift_keeps_shape_and_takes_values_from_the_image():
    x = _batch(b=16, size=12)
    cfg = AugmentConfig(flip=0, shift=3, brightness=0, contrast=0, saturation=0, erase=0)
    out = augment_batch(x, cfg, _gen(0))
    assert out.shape == x.shape
    for image, shifted in zip(x, out):
        assert torch.isin(shifted, image).all()
    # each output is a translate of its input: the centre crop appears at some offset
    assert not torch.equal(out, x)
    inner = out[:, :, 3:-3, 3:-3]
    for b in range(len(x)):
        windows = x[b].unfold(1, 6, 1).unfold(2, 6, 1)  # (3, 7, 7, 6, 6)
        hits = (windows == inner[b][:, None, None]).all(-1).all(-1).all(0)
        assert hits.any()


def test_output_range_stays_in_unit_interval():
    x = _batch(b=32)
    cfg = AugmentConfig(brightness=0.9, contrast=0.9, saturation=0.9, erase=1.0, shift=4)
    out = augment_batch(x, cfg, _gen(5))
    assert out.min() >= 0 and out.max() <= 1 and out.dtype == x.dtype


def test_erase_with_p1_fills_a_rectangle_with_the_mean_colour():
    x = torch.zeros(4, 3, 20, 20)
    cfg = AugmentConfig(flip=0, shift=0, brightness=0, contrast=0, saturation=0, erase=1.0,
                        erase_area=(0.1, 0.1))
    out = augment_batch(x, cfg, _gen(0))
    filled = (out[:, 0] == IMAGENET_MEAN[0])
    area = filled.flatten(1).sum(1).float() / 400
    assert ((area > 0.05) & (area < 0.15)).all()
    rows, cols = filled.any(2), filled.any(1)
    assert torch.equal(rows.sum(1) * cols.sum(1), filled.flatten(1).sum(1))  # a rectangle


def test_uint8_input_rejected():
    with pytest.raises(TypeError, match="float images"):
        augment_batch(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), IDENTITY, _gen(0))


def test_to_float_and_normalize():
    u8 = torch.full((2, 3, 2, 2), 255, dtype=torch.uint8)
    x = to_float(u8)
    assert x.dtype == torch.float32 and torch.all(x == 1)
    y = normalize(x)
    expected = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(y[0, :, 0, 0], expected)


def test_load_image_tensor_accepts_path_pil_and_array(tmp_path):
    array = np.zeros((6, 4, 3), np.uint8)
    array[..., 1] = 200
    Image.fromarray(array).save(tmp_path / "a.png")
    from_path = load_image_tensor(tmp_path / "a.png")
    assert from_path.dtype == torch.uint8 and from_path.shape == (3, 6, 4)
    assert torch.equal(load_image_tensor(Image.fromarray(array)), from_path)
    assert torch.equal(load_image_tensor(array), from_path)
    grey = load_image_tensor(np.full((5, 5), 7, np.uint8), image_size=3)
    assert grey.shape == (3, 3, 3) and torch.all(grey == 7)
    assert load_image_tensor(array, image_size=10).shape == (3, 10, 10)


def test_load_image_tensor_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_image_tensor(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"garbage")
    with pytest.raises(OSError):
        load_image_tensor(tmp_path / "bad.png")
