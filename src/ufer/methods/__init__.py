"""Methods: one file each on the common ``FERMethod`` base, registered by name."""
from ufer.methods.base import FERMethod, load_method

__all__ = ["FERMethod", "load_method"]
