"""Every user-facing parameter of an explanation, written once: defaults, choices and help (torch-free).

The CLI builds its options from these, the Slicer panel and its engine launcher take their defaults
and choice lists from here, and the engine's dataclasses use the same defaults, so a default changes
in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from CTCounterfactualLib.errors import CTCFError

MODES = ("scan", "joint")
DEFAULT_MODE = "scan"
HEATMAP_METHODS = ("int", "mean", "mm", "max")
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_DEVICE = "auto"
DEFAULT_CHUNK_SIZE = 10
DEFAULT_BATCH_SIZE = 8
PROGRESS_KINDS = ("bar", "json", "none")
EXECUTORS = ("local", "ray")  # ctcf batch / evaluate: a process pool on this machine, or Ray actors
DEFAULT_EXECUTOR = "local"


def _param(default, help: str, **extra):
    """A search parameter: its default and the help text its CLI option shows."""
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True)
class SearchParams:
    """The lambda search's rules (the reference's defaults); each field is one ``ctcf explain`` option."""

    pred_diff: float = _param(0.8, "stop when the prediction fell by this")
    step_size: float = _param(10.0, "lambda step of the reference schedule 0, -10, -21, ...")
    max_steps: float = _param(3000.0, "stop when lambda passes -this")
    max_pixel_diff_pct: float = _param(
        0.05, "stop when the change exceeds this share of the decoded volume's absolute sum"
    )
    pred_floor: float = _param(0.05, "stop below this prediction")
    lambda_sweep_steps: int = _param(10, "sweep frames from the CF's lambda to 0")
    heatmap_method: str = _param("int", "how the sweep frames become the heatmap", choices=HEATMAP_METHODS)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isfinite(value):
                raise CTCFError(f"{option_name(f.name)} must be a finite number (got {value})")
        for name in ("pred_diff", "max_steps", "max_pixel_diff_pct"):
            if getattr(self, name) <= 0:
                raise CTCFError(f"{option_name(name)} must be positive (got {getattr(self, name):g})")
        if self.lambda_sweep_steps < 2:
            raise CTCFError("lambda_sweep_steps must be at least 2")
        if self.heatmap_method not in HEATMAP_METHODS:
            raise CTCFError(f"heatmap method {self.heatmap_method!r} is not one of {', '.join(HEATMAP_METHODS)}")
        if self.step_size <= 0:
            raise CTCFError("the search step size must be positive")


def search_fields():
    """The SearchParams fields, in order, for building option lists (CLI) and argument lists (Slicer launcher)."""
    return fields(SearchParams)


def option_name(field_name: str) -> str:
    """``pred_diff`` -> ``--pred-diff``: the one spelling of a parameter on the command line."""
    return "--" + field_name.replace("_", "-")
