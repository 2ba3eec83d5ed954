"""Method registry: ``register_method`` / ``create_method`` / ``list_methods`` (timm's pattern)."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_METHODS: dict[str, type] = {}
# Modules whose import registers the built-in methods (imported lazily on first lookup);
# every one must exist: a missing module is an ImportError, never a silent skip.
BUILTIN_MODULES = ("ufer.methods.baseline", "ufer.methods.scn", "ufer.methods.mtac",
                   "ufer.methods.poi", "ufer.methods.ldlva")


def register_method(name: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: make a ``FERMethod`` subclass available as ``create_method(name)``."""
    def wrap(cls: type[T]) -> type[T]:
        if name in _METHODS and _METHODS[name] is not cls:
            raise ValueError(f"method {name!r} is already registered by {_METHODS[name]}")
        _METHODS[name] = cls
        cls.method_name = name  # type: ignore[attr-defined]
        return cls
    return wrap


def _load_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def list_methods() -> list[str]:
    """Names of all registered methods, sorted."""
    _load_builtins()
    return sorted(_METHODS)


def method_class(name: str) -> type:
    """The class registered as ``name``; ValueError naming the known methods otherwise."""
    _load_builtins()
    if name not in _METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def create_method(name: str, **kwargs: Any):
    """Instantiate the method registered as ``name`` with its constructor arguments."""
    return method_class(name)(**kwargs)
