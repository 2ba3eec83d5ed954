"""The grid of ``ufer bench``: its settings (``BenchConfig``), per-preset defaults and where
each cell and cleanlab reference keeps its files."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ufer._registry import list_methods

# Defaults per synthetic preset: epochs, backbone, batch size, and the default grid.
PRESET_DEFAULTS: dict[str, dict[str, Any]] = {
    "tiny": {"epochs": 2, "backbone": "fer_resnet_small", "batch_size": 64,
             "noise": [0.0, 0.3], "seeds": 1},
    "demo": {"epochs": 25, "backbone": "fer_resnet_small", "batch_size": 128,
             "noise": [0.0, 0.3], "seeds": 1},
    "bench-cpu": {"epochs": 70, "backbone": "fer_resnet_small", "batch_size": 128,
                  "noise": [0.0, 0.3], "seeds": 3},
    "bench": {"epochs": 40, "backbone": "resnet18", "batch_size": 64,
              "noise": [0.0, 0.1, 0.2, 0.3], "seeds": 3},
    # the papers' regime needs their batch of 512 to take enough steps: 10k training images;
    # the scratch schedule takes as many steps as bench-cpu's (20 x 79 ~ 70 x 23)
    "bench-paper": {"epochs": 20, "backbone": "fer_resnet_small", "batch_size": 128,
                    "noise": [0.0, 0.3], "seeds": 3},
    "bench-raf": {"epochs": 20, "backbone": "fer_resnet_small", "batch_size": 128,
                  "noise": [0.0, 0.3], "seeds": 3},
}
# Method arguments that make up the shared schedule: set per method, they break the comparison.
SCHEDULE_KEYS = ("backbone", "pretrained_path", "optimizer", "lr", "weight_decay", "momentum",
                 "scheduler", "warmup", "milestones", "lr_decay")
NO_PRESET = {"epochs": 30, "backbone": "fer_resnet_small", "batch_size": 64,
             "noise": [0.0, 0.1, 0.2, 0.3], "seeds": 3}


@dataclass
class BenchConfig:
    """One benchmark grid.

    Attributes:
        out: output folder (data cache, cells, tables, plots).
        manifest: the clean manifest; None with ``preset`` (generated into OUT/data).
        preset: synthetic preset to generate (``tiny``, ``demo``, ``bench-cpu``, ``bench``).
        methods: registered method names (default: all); ``name@label`` is a variant of
            method ``name`` with its own ``method_configs`` entry (e.g. ``ldlva@forward``),
            a row and cells of its own.
        noise: noise rates of the grid.
        seeds: number of seeds (first_seed .. first_seed + seeds - 1); each seeds the noise,
            the data order and init.
        first_seed: the first seed of the grid (0); a grid split across machines runs
            ``seeds`` seeds from here into its own OUT, and the cell folders combine.
        protocol: ``symmetric``, ``pairwise`` or a transition-matrix file (.csv/.npy) whose
            off-diagonal pattern is scaled to each rate.
        epochs, backbone, batch_size, image_size: the schedule shared by every cell.
        method_configs: method name (or ``all``) -> constructor keyword arguments.
        cleanlab: compute the cleanlab reference (out-of-fold baseline, ``folds`` folds,
            always the scratch schedule).
        data_seed: seed of the generated synthetic data.
        regime: ``scratch`` (one shared schedule from random weights) or ``paper`` (each
            method's paper recipe from a pretrained backbone; see ``recipes``).
        pretrained: the paper regime's backbone weights; None = generated once with
            ``ufer pretrain`` into OUT/data/pretrain-<backbone>-<size>px.
        reuse_unverified: reuse cells written before cells recorded their settings (they
            cannot be checked against this grid).
        jobs: cells trained at once, each in its own process with cores / jobs threads
            (on a 2-core CPU two 1-thread cells do ~1.2x the work of one 2-thread cell);
            a cell's training output then goes to ``OUT/cells/<cell>/train.log``.
    """

    out: str = "runs/bench"
    manifest: str | None = None
    preset: str | None = None
    methods: list[str] | None = None
    noise: list[float] | None = None
    seeds: int | None = None
    first_seed: int = 0
    protocol: str = "symmetric"
    epochs: int | None = None
    backbone: str | None = None
    batch_size: int | None = None
    image_size: int | None = None
    method_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    cleanlab: bool = True
    folds: int = 3
    data_seed: int = 0
    jobs: int = 1
    regime: str = "scratch"
    pretrained: str | None = None
    reuse_unverified: bool = False

    @property
    def seed_list(self) -> list[int]:
        """The grid's seeds: ``first_seed`` .. ``first_seed + seeds - 1`` (resolved config)."""
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def resolved(self) -> BenchConfig:
        """A copy with every None filled from the preset's (or the generic) defaults."""
        if self.preset is not None and self.preset not in PRESET_DEFAULTS:
            raise ValueError(f"unknown preset {self.preset!r}; choose from "
                             f"{sorted(PRESET_DEFAULTS)}")
        if (self.manifest is None) == (self.preset is None):
            raise ValueError("give exactly one of --manifest (your data) or --preset "
                             "(generate synthetic data)")
        defaults = PRESET_DEFAULTS[self.preset] if self.preset else NO_PRESET
        values = asdict(self)
        for key, value in defaults.items():
            if values[key] is None:
                values[key] = value
        values["methods"] = list(values["methods"] or list_methods())
        known = list_methods()
        unknown = [m for m in values["methods"] if method_of(m) not in known]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; known: {', '.join(known)}")
        for name in values["method_configs"]:
            rows = set(values["methods"]) | {method_of(m) for m in values["methods"]}
            if name != "all" and name not in rows:
                raise ValueError(f"--method-config {name}: not a method of this bench "
                                 f"({', '.join(values['methods'])}, or 'all')")
        values["noise"] = sorted(float(r) for r in values["noise"])
        if values["regime"] not in ("scratch", "paper"):
            raise ValueError(f"unknown regime {values['regime']!r}: scratch | paper")
        if values["pretrained"] and values["regime"] != "paper":
            raise ValueError("--pretrained is the paper regime's start; add --regime paper")
        for name in ("seeds", "epochs", "batch_size", "folds", "jobs"):
            if values[name] < (2 if name == "folds" else 1):
                raise ValueError(f"{name} must be at least {2 if name == 'folds' else 1}, "
                                 f"got {values[name]}")
        if values["first_seed"] < 0:
            raise ValueError(f"first_seed must be at least 0, got {values['first_seed']}")
        if values["image_size"] is not None and values["image_size"] < 8:
            raise ValueError(f"image_size must be at least 8 pixels, got {values['image_size']}")
        return BenchConfig(**values)


def method_of(label: str) -> str:
    """The registered method of a grid row: ``ldlva@forward`` -> ``ldlva``."""
    return label.split("@", 1)[0]


def merged_config(configs: dict[str, dict[str, Any]], label: str) -> dict[str, Any]:
    """Constructor arguments of row ``label`` from ``--method-config`` entries: ``all``'s,
    then the method's own, then (for a variant ``name@x``) the variant's."""
    return {**configs.get("all", {}), **configs.get(method_of(label), {}),
            **configs.get(label, {})}


def method_kwargs(cfg: BenchConfig, label: str) -> dict[str, Any]:
    """Constructor arguments of row ``label`` in the grid: the backbone, then
    ``merged_config``."""
    return {"backbone": cfg.backbone, **merged_config(cfg.method_configs, label)}


def load_method_config(path: str | Path) -> dict[str, Any]:
    """Constructor arguments from YAML: a flat mapping, or a ``ufer train`` config whose
    ``model.init_args`` (or ``init_args``) holds them."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise TypeError(f"{path}: expected a mapping of method arguments")
    if "model" in data:
        data = data["model"] or {}
    if "init_args" in data:
        data = data["init_args"] or {}
    return dict(data)


def cell_name(label: str, rate: float, seed: int) -> str:
    return f"{label}-n{rate:g}-s{seed}"


def cell_dir(out: str | Path, label: str, rate: float, seed: int,
             regime: str = "scratch") -> Path:
    """``OUT/cells/<label>-n<rate>-s<seed>`` (scratch regime) or
    ``OUT/cells/paper/<label>-n<rate>-s<seed>``: one cell's run, scores and results."""
    folder = Path(out) / "cells"
    return (folder if regime == "scratch" else folder / regime) / cell_name(label, rate, seed)


def reference_dir(out: str | Path, rate: float, seed: int) -> Path:
    """``OUT/cleanlab/n<rate>-s<seed>``: one cleanlab reference's folds and results.json."""
    return Path(out) / "cleanlab" / f"n{rate:g}-s{seed}"
