"""Test-wide settings: offline hubs, one torch thread, no progress-bar floods."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PYTHONHASHSEED", "0")

import torch  # noqa: E402

torch.set_num_threads(1)
