"""Test-wide settings and fixtures: offline hubs, one torch thread, tiny synthetic data."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

torch.set_num_threads(1)

# Small enough for CPU tests: ~200 training faces at 32 px, a tiny timm backbone.
TINY_BACKBONE = "test_resnet"


@pytest.fixture(scope="session")
def tiny_manifest(tmp_path_factory) -> str:
    """A synthetic `tiny` dataset (train/val/test, VA, AUs, votes, clean_label)."""
    from ufer.data.synthetic import generate

    return str(generate(tmp_path_factory.mktemp("tiny"), preset="tiny", seed=0))


@pytest.fixture(scope="session")
def tiny_noisy_manifest(tiny_manifest: str) -> str:
    """``tiny_manifest`` with 30 % symmetric noise on the training labels."""
    from ufer.data.manifest import read_manifest, write_manifest
    from ufer.data.noise import apply_noise

    frame, meta = apply_noise(read_manifest(tiny_manifest), protocol="symmetric", rate=0.3,
                              seed=0, exact=True)
    return str(write_manifest(frame, meta, tiny_manifest.replace("manifest.csv", "noisy.csv")))


def tiny_fit_kwargs(**overrides):
    """Trainer overrides for tests: CPU, no progress bar, small batches."""
    kwargs = {"accelerator": "cpu", "progress": False}
    kwargs.update(overrides)
    return kwargs
