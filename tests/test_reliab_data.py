"""Data (issue 11): 16-bit grey PNGs decode, a Latin-1 manifest names its file and line,
sizes and split names are checked when the data module is made, and a run without
validation rows says once that it writes no best.ckpt."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import TINY_BACKBONE, tiny_fit_kwargs
from helpers import write_tiny_manifest
from PIL import Image

from ufer.data.datamodule import FERDataModule
from ufer.data.manifest import ManifestError, read_manifest, write_manifest
from ufer.data.transforms import load_image_tensor
from ufer.engine.train import train_method


def test_reliab_16bit_grey_png_is_scaled_to_8_bits(tmp_path):
    values = np.array([[0, 257, 32896], [40000, 65278, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "grey16.png")
    with Image.open(tmp_path / "grey16.png") as opened:
        assert opened.mode == "I;16"  # a real 16-bit PNG
    image = load_image_tensor(tmp_path / "grey16.png")
    expected = np.round(values / 257.0).astype(np.uint8)  # 0, 1, 128, 156, 254, 255
    assert image.shape == (3, 2, 3)
    for channel in image.numpy():
        np.testing.assert_array_equal(channel, expected)
    assert load_image_tensor(values).numpy()[0].tolist() == expected.tolist()


def test_reliab_latin1_manifest_names_the_file_and_line(tmp_path):
    path = write_tiny_manifest(tmp_path)
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace("img/", "img/café-", 1)
    path.write_bytes("\n".join(lines).encode("latin-1"))
    with pytest.raises(ManifestError, match=rf"{path}, line 4: is not UTF-8 text \(byte 0xe9 "
                                            r"at offset \d+\); save it as UTF-8"):
        read_manifest(path)


@pytest.mark.parametrize(("setting", "problem"), [
    ({"image_size": 0}, "image_size must be an integer >= 1 or None"),
    ({"image_size": -5}, "image_size must be an integer >= 1 or None"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"eval_batch_size": -1}, "eval_batch_size must be an integer >= 1"),
    ({"val_split": "validation"}, "val_split 'validation' is not a split"),
    ({"test_split": "Test"}, "test_split 'Test' is not a split")])
def test_reliab_data_module_checks_sizes_and_splits(tmp_path, setting, problem):
    path = write_tiny_manifest(tmp_path)
    with pytest.raises(ValueError, match=problem):
        FERDataModule(str(path), **setting)


def test_reliab_no_validation_rows_says_once_that_best_ckpt_is_missing(tiny_manifest,
                                                                       tmp_path, caplog):
    data = read_manifest(tiny_manifest, check_images=False)
    no_val = write_manifest(data.frame[data.frame["split"] != "val"],
                            {k: v for k, v in data.meta.items() if k != "counts"},
                            tiny_manifest.replace("manifest.csv", "no_val.csv"))
    run = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="ufer"):
        train_method(no_val, "baseline", run, 2, test=False,
                     method_kwargs={"backbone": TINY_BACKBONE}, data_kwargs={"batch_size": 64},
                     **tiny_fit_kwargs())
    notes = [r.getMessage() for r in caplog.records if "best.ckpt" in r.getMessage()]
    assert len(notes) == 1, notes
    assert "no 'val' rows" in notes[0] and "checkpoints/last.ckpt (the last epoch)" in notes[0]
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert not (run / "checkpoints" / "best.ckpt").exists()
