"""ufer: facial expression recognition that stays accurate under uncertain labels.

Public API: ``list_methods``, ``create_method``, ``register_method``, ``load_method``,
``read_manifest``, ``Recognizer`` (imported on first use).
"""
from typing import Any

from ufer._registry import create_method, list_methods, register_method

__version__ = "0.1.0"


def load_method(path: str):
    """(method, data settings) rebuilt from a checkpoint (see ``ufer.methods.base.load_method``)."""
    from ufer.methods.base import load_method as _load

    return _load(path)


def read_manifest(path: str, check_images: bool = True):
    """Read and validate a manifest (see ``ufer.data.manifest.read_manifest``)."""
    from ufer.data.manifest import read_manifest as _read

    return _read(path, check_images=check_images)


def __getattr__(name: str) -> Any:
    """``ufer.Recognizer`` without importing the inference stack at ``import ufer``."""
    if name == "Recognizer":
        from ufer.inference.recognizer import Recognizer

        return Recognizer
    raise AttributeError(f"module 'ufer' has no attribute {name!r}")


__all__ = [
    "Recognizer",
    "__version__",
    "create_method",
    "list_methods",
    "load_method",
    "read_manifest",
    "register_method",
]
