"""baseline: backbone + linear classifier trained with cross-entropy on the given labels.

The reference every method must beat, trained with the same data, augmentation,
optimizer and schedule in the same ``ufer bench`` run (shared/spec/baselines.md).
"""
from ufer._registry import register_method
from ufer.methods.base import FERMethod


@register_method("baseline")
class Baseline(FERMethod):
    """Plain CE (``FERMethod.training_losses``); no auxiliary heads, no relabeling."""
