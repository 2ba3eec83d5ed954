"""``ufer prepare`` adapters: one module per dataset, registered by name in ``ADAPTERS``.

An adapter module has ``NAME``, ``SUMMARY`` (one line for ``--help``), ``ALIGNS`` (whether
``--detect`` applies: sources without aligned crops), ``add_arguments(parser)`` for its own
options, and ``read(root, ledger, **options) -> Source``, whose keyword-only parameters
are exactly those options. Everything they share lives in ``common.py``.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from types import ModuleType
from typing import Any

from ufer.data.adapters import affectnet, affwild2, ckplus, common, ferplus, folder, rafdb, sfew

ADAPTERS: dict[str, ModuleType] = {
    m.NAME: m for m in (rafdb, affectnet, ferplus, affwild2, sfew, ckplus, folder)
}


def option_names(name: str) -> list[str]:
    """The keyword-only parameters of an adapter's ``read``: its options."""
    params = inspect.signature(ADAPTERS[name].read).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def prepare(name: str, root: str | Path, out: str | Path, *,
            options: dict[str, Any] | None = None, align: common.Aligner | None = None,
            **kwargs: Any) -> Path:
    """Convert the dataset at ROOT with adapter ``name`` into ``OUT/manifest.csv`` + images.

    Args:
        name: a key of ``ADAPTERS``.
        root: the dataset as downloaded; never modified.
        out: output folder, outside ROOT.
        options: the adapter's own options (``option_names(name)``); defaults otherwise.
        align: face detection + alignment (only for adapters with ``ALIGNS``).
        **kwargs: ``skip_bad``, ``overwrite``, ``link``, ``table``, ``log`` of ``common.run``.

    Returns:
        The manifest path.
    """
    if name not in ADAPTERS:
        raise ValueError(f"unknown source {name!r}; choose one of {', '.join(ADAPTERS)}")
    adapter, options = ADAPTERS[name], dict(options or {})
    unknown = sorted(set(options) - set(option_names(name)))
    if unknown:
        raise ValueError(f"{name} has no option {unknown}; its options: {option_names(name)}")
    if align is not None and not adapter.ALIGNS:
        raise ValueError(f"{name} ships aligned faces; face detection (--detect) does not apply")
    if adapter.ALIGNS and align is None:
        kwargs.get("log", print)(f"note: {name} images are stored whole, without face detection "
                                 "and alignment (--detect)")
    root = Path(root)
    return common.run(name, root, Path(out), lambda ledger: adapter.read(root, ledger, **options),
                      options=options, align=align, **kwargs)


__all__ = ["ADAPTERS", "option_names", "prepare"]
