"""Foldline: a trainable AlphaFold 3-class structure predictor (library package)."""

__version__ = "0.1.0"
