"""Telling a failed allocation from a model's own error (the loaders and the memory estimate both need it)."""

from __future__ import annotations

import torch


def is_out_of_memory(error: BaseException) -> bool:
    """A failed allocation: CUDA's OutOfMemoryError, CPU allocator failures, numpy's MemoryError."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(error, RuntimeError) and "can't allocate memory" in str(error)
