"""The rows of a grid and how each one trains: the two regimes of ``ufer bench``.

- ``scratch``: every row trains the bench's backbone from random weights under ONE shared
  schedule (the grid's epochs and batch size, SGD + OneCycle unless ``all`` says otherwise);
  methods keep their paper switches ("paper switches, shared schedule").
- ``paper``: what the papers do. Every method row fine-tunes a pretrained backbone with its
  own paper's recipe (optimizer, lr schedule, batch size, epochs from
  ``configs/paper/<FERMethod.paper_config>``) and switches; the baseline is run once under
  each distinct recipe a method of the grid uses (row ``baseline@<method>``), so every method
  is compared with a baseline that got the same recipe. Image size, augmentation and backbone
  architecture stay the bench's, identical for all rows.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ufer._registry import method_class
from ufer.engine.bench.config import BenchConfig, merged_config, method_of
from ufer.methods.base import FERMethod

# Constructor arguments that make up a recipe (with the data's batch size and the epochs).
RECIPE_KEYS = ("optimizer", "lr", "weight_decay", "momentum", "scheduler", "warmup",
               "milestones", "lr_decay")
# Paper-config arguments the bench sets itself: its backbone, the regime's pretrained start.
BENCH_KEYS = ("backbone", "pretrained_path", "input_mean", "input_std")
CONFIG_DIR = Path(__file__).resolve().parents[4] / "configs" / "paper"
REGIMES = ("scratch", "paper")


@dataclass(frozen=True)
class Recipe:
    """How a row trains: optimizer and schedule arguments, batch size, epochs, and the
    row whose paper it comes from (``shared`` in the scratch regime)."""

    source: str
    model: tuple[tuple[str, Any], ...]
    batch_size: int
    epochs: int

    def describe(self) -> str:
        """One line for the tables, e.g. ``adam 0.01 multistep [10, 20] x0.1, batch 512,
        40 epochs``."""
        m = dict(self.model)
        schedule = m.get("scheduler", "onecycle")
        if schedule == "multistep":
            schedule += f" {list(m.get('milestones', []))} x{m.get('lr_decay', 0.1)}"
        elif schedule == "exponential":
            schedule += f" x{m.get('lr_decay')}/epoch"
        return (f"{m.get('optimizer', 'sgd')} {m.get('lr', 0.05)} {schedule}, batch "
                f"{self.batch_size}, {self.epochs} epochs")


@dataclass(frozen=True)
class Row:
    """One row of the tables: ``label`` (``mtac``, ``ldlva@forward``, ``baseline@mtac``),
    the registered ``method``, its constructor ``kwargs`` and its ``recipe``."""

    label: str
    method: str
    regime: str
    recipe: Recipe
    kwargs: dict[str, Any] = field(hash=False)


def _frozen(value: Any) -> Any:
    """Lists as tuples, so a recipe is hashable and compares equal to its own copies."""
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


def recipe_items(kwargs: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The recipe keys of ``kwargs`` (optimizer, lr, schedule ...) as sorted, hashable
    (key, value) pairs: two recipes are equal exactly when these are."""
    return tuple(sorted((k, _frozen(kwargs[k])) for k in RECIPE_KEYS if k in kwargs))


def paper_config(method: str) -> dict[str, Any]:
    """The parsed ``configs/paper/<file>`` named by the method's ``paper_config``."""
    name = method_class(method).paper_config
    if name is None:
        raise ValueError(f"method {method!r} has no paper config (FERMethod.paper_config); "
                         "it cannot run in the paper regime")
    path = CONFIG_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"paper config of {method!r} not found: {path}")
    return yaml.safe_load(path.read_text()) or {}


def paper_recipe(method: str) -> tuple[Recipe, dict[str, Any]]:
    """(the recipe, the method switches) of ``method``'s paper config."""
    config = paper_config(method)
    init = dict((config.get("model") or {}).get("init_args") or {})
    recipe = Recipe(method, recipe_items(init),
                    int((config.get("data") or {})["batch_size"]),
                    int((config.get("trainer") or {})["max_epochs"]))
    switches = {k: v for k, v in init.items() if k not in RECIPE_KEYS + BENCH_KEYS}
    return recipe, switches


def shared_recipe(cfg: BenchConfig) -> Recipe:
    """The scratch regime's one schedule: the grid's batch size and epochs, the base
    class's optimizer defaults unless ``--method-config all=`` changes them."""
    defaults = {k: p.default for k, p in inspect.signature(FERMethod.__init__).parameters.items()
                if k in RECIPE_KEYS}
    model = {**defaults, **{k: v for k, v in cfg.method_configs.get("all", {}).items()
                            if k in RECIPE_KEYS}}
    return Recipe("shared", recipe_items(model), int(cfg.batch_size), int(cfg.epochs))


def grid_rows(cfg: BenchConfig, pretrained: str | None = None) -> list[Row]:
    """The rows of ``cfg`` (resolved) in its regime; ``pretrained`` is the paper regime's
    backbone weights."""
    if cfg.regime == "scratch":
        recipe = shared_recipe(cfg)
        return [Row(m, method_of(m), "scratch", recipe,
                    {"backbone": cfg.backbone, **merged_config(cfg.method_configs, m)})
                for m in cfg.methods]
    start = {"backbone": cfg.backbone, "pretrained_path": pretrained}
    rows, recipes = [], {}
    for label in cfg.methods:
        if method_of(label) == "baseline":
            continue
        recipe, switches = paper_recipe(method_of(label))
        recipes.setdefault(recipe.model + (recipe.batch_size, recipe.epochs), recipe)
        kwargs = {**switches, **dict(recipe.model), **start,
                  **merged_config(cfg.method_configs, label)}
        model = recipe_items(kwargs)
        if model != recipe.model:
            print(f"warning: --method-config {label} changes its paper recipe; no baseline of "
                  "the grid trains with the changed one", flush=True)
        rows.append(Row(label, method_of(label), "paper",
                        Recipe(recipe.source, model, recipe.batch_size, recipe.epochs), kwargs))
    if any(method_of(m) == "baseline" for m in cfg.methods):
        if not recipes:
            raise ValueError("the paper regime runs the baseline under the recipes of the "
                             "other methods of the grid; add at least one method")
        rows[:0] = [Row(f"baseline@{r.source}", "baseline", "paper", r, {**dict(r.model), **start})
                    for r in recipes.values()]
    return rows
