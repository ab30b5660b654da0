"""Which torch the engine process needs, checked from the installed package's metadata (torch is never imported here).

Importing torch to check it would load it into Slicer's own process, where a damaged install raises OSError (a
DLL that fails to load) and where only the engine process needs it.
"""

from __future__ import annotations

import importlib.metadata

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

TORCH_REQUIREMENT = Requirement("torch>=2.1")  # as the engine's pyproject.toml says


def torch_problem() -> str | None:
    """None when an installed torch meets ``TORCH_REQUIREMENT``; otherwise what is wrong, in a few words."""
    try:
        installed = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return "PyTorch is not installed"
    try:
        version = Version(installed)
    except InvalidVersion:
        return f"PyTorch reports an unreadable version ({installed})"
    if not TORCH_REQUIREMENT.specifier.contains(version, prereleases=True):
        return f"PyTorch {installed} is installed; CT Counterfactual needs {TORCH_REQUIREMENT.specifier}"
    return None
