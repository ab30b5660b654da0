"""The engine's torch-free contract (``params``, ``protocol``) for the Slicer side: defaults, file names, columns.

The scene side reads output folders and builds engine command lines; it takes every file name,
column and default from the engine's own modules instead of restating them. Those modules need
neither torch nor Qt, so this works before PyTorch is installed in Slicer.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This package sits beside the module script; the engine sits beside it too once installed, and one
# folder up in the source tree.
SCENE_PARENT = Path(__file__).resolve().parents[1]
ENGINE_PARENT = next(
    (
        p
        for p in (Path(__file__).resolve().parents[1], Path(__file__).resolve().parents[2])
        if (p / "CTCounterfactualLib").is_dir()
    ),
    Path(__file__).resolve().parents[2],
)


if str(ENGINE_PARENT) not in sys.path:
    sys.path.insert(0, str(ENGINE_PARENT))

from CTCounterfactualLib import params, protocol  # noqa: E402
from CTCounterfactualLib.jobs.metrics_text import metrics_lines  # noqa: E402

__all__ = ["ENGINE_PARENT", "SCENE_PARENT", "metrics_lines", "params", "protocol"]
