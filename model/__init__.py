"""Foldline: a trainable AlphaFold 3-class structure predictor (library package)."""

import os

# MKL's fastest CPU kernels round differently with the alignment of their buffers, which depends on
# the process's heap layout (environment, path lengths): bitwise reruns need its strict mode. Read at
# MKL's first call, so it takes effect when `model` is imported before any matrix product runs.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

__version__ = "0.1.0"
