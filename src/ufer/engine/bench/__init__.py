"""``ufer bench``: methods x noise rates x seeds on one manifest, with known ground truth.

Modules: ``config`` (the grid's settings and folders), ``cells`` (one method on one noisy
manifest), ``reference`` (cleanlab), ``tables`` and ``plots`` (results.md, plots/), ``grid``
(``run_bench``); ``ufer.engine.jobs`` runs the cells in worker processes.
"""
from ufer.engine.bench.config import (
    PRESET_DEFAULTS,
    BenchConfig,
    cell_dir,
    load_method_config,
    reference_dir,
)
from ufer.engine.bench.grid import run_bench
from ufer.engine.bench.tables import format_bench

__all__ = ["PRESET_DEFAULTS", "BenchConfig", "cell_dir", "format_bench", "load_method_config",
           "reference_dir", "run_bench"]
