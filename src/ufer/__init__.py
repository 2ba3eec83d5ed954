"""ufer: facial expression recognition that stays accurate under uncertain labels."""
__version__ = "0.1.0"
