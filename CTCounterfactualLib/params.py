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
DEMO_EFFUSION_SEED = 5  # ctcf demo's simulated effusion
DEMO_EFFUSION_DESCRIPTION = "a right crescent of 366 ml"  # what that seed draws on the bundled CT (tested)

# Where the fast path runs the lambda search (--faithful always searches at the input's resolution):
# "model": on the autoencoder's native slice grid when both models resize to a fixed size smaller than
# the input (decoded slices are then upsampled once, for the outputs); "input": at the input's resolution.
SEARCH_RESOLUTIONS = ("model", "input")
DEFAULT_SEARCH_RESOLUTION = "model"

# How the decoder's raw output becomes window units (--output-map; --faithful implies "reference"):
# "reference": the convention's own output map; "calibrated": a robust linear fit of the reconstruction on
# the input inside the body, on this volume; "auto": calibrated when the convention's output map is not the
# inverse of its input map (the published CT VQ-GAN's (x+2)/4 after x*2-1), else reference.
OUTPUT_MAPS = ("auto", "reference", "calibrated")
DEFAULT_OUTPUT_MAP = "auto"

# The lambda unit (--lambda-scale; --faithful implies "reference"): "reference" = raw gradient units (the
# reference's numbers); "auto" = one unit of lambda moves the chunk's latents by LAMBDA_UNIT_RMS times
# their own RMS (an RMS change over the chunk's latent elements), whatever the classifier's gradient scale.
LAMBDA_SCALES = ("auto", "reference")
DEFAULT_LAMBDA_SCALE = "auto"
LAMBDA_UNIT_RMS = 1e-3

# What the counterfactual is (--counterfactual; --faithful implies "decoded"): "detail" = the input plus the
# decoder's change, x + D(z') - D(z), so a voxel the shift leaves alone keeps the scan's own value; "decoded" =
# the reference's D(z'), every voxel re-rendered by the autoencoder.
COUNTERFACTUALS = ("detail", "decoded")
DEFAULT_COUNTERFACTUAL = "detail"
# Which way the prediction is pushed (--direction): "lower" (the reference) or "raise" (what would make a
# negative positive).
DIRECTIONS = ("lower", "raise")
# The sparse direction keeps its top latent positions per slice or over the whole chunk (--sparse-scope).
SPARSE_SCOPES = ("slice", "chunk")

# Autoencoder fidelity on the input (measured on every run, inside the body): warn outside these.
FIDELITY_SLOPE_RANGE = (0.8, 1.25)
FIDELITY_MAX_MAE_HU = 150.0
BODY_THRESHOLD_HU = -500.0  # body mask: above this, holes (lungs, airways) filled slice by slice


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
    lambda_scale: str = _param(
        DEFAULT_LAMBDA_SCALE,
        "lambda unit: auto = one unit moves the chunk's latents by 0.1%% of their RMS (any classifier); "
        "reference = raw gradient units; --faithful implies reference",
        choices=LAMBDA_SCALES,
    )
    counterfactual: str = _param(
        DEFAULT_COUNTERFACTUAL,
        "detail = the input plus the decoder's change (unchanged voxels keep the input's values; the search, the "
        "stop rules and the reported predictions score this volume); decoded = the reference's D(z'), every voxel "
        "re-rendered; --faithful implies decoded",
        choices=COUNTERFACTUALS,
    )
    direction: str = _param(
        "lower", "lower the prediction, or raise it (what would make a negative positive)", choices=DIRECTIONS
    )
    sparse_fraction: float = _param(
        1.0,
        "keep only this fraction of latent positions (those with the largest gradient magnitude, per "
        "--sparse-scope) in the direction; 1 = all",
        metavar="FRACTION",
    )
    sparse_scope: str = _param("slice", "where --sparse-fraction ranks positions", choices=SPARSE_SCOPES)
    relinearize_every: int = _param(
        0,
        "recompute the direction at the shifted latents every this many search steps (gradient descent in "
        "latent space, the same stop rules); 0 = one straight line (the reference)",
        metavar="STEPS",
    )
    region: str = _param(
        "",
        "a mask file on the input's grid (nonzero = region): shift only latents over it and, for the detail "
        "counterfactual, change only its voxels; the result says whether changing only the region lowers the "
        "prediction",
        metavar="MASK",
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isfinite(value):
                raise CTCFError(f"{option_name(f.name)} must be a finite number (got {value})")
        for name in ("pred_diff", "step_size", "max_steps", "max_pixel_diff_pct"):
            if getattr(self, name) <= 0:
                raise CTCFError(f"{option_name(name)} must be positive (got {getattr(self, name):g})")
        if self.lambda_sweep_steps < 2:
            raise CTCFError(f"--lambda-sweep-steps must be at least 2 (got {self.lambda_sweep_steps})")
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices is not None and getattr(self, f.name) not in choices:
                raise CTCFError(f"{option_name(f.name)} {getattr(self, f.name)!r} is not one of {', '.join(choices)}")
        if not 0 < self.sparse_fraction <= 1:
            raise CTCFError(f"--sparse-fraction must be in (0, 1] (got {self.sparse_fraction:g})")
        if self.relinearize_every < 0:
            raise CTCFError(f"--relinearize-every must be 0 or more (got {self.relinearize_every})")

    def variant_options(self) -> dict:
        """The options that change the reference's straight line (what --faithful cannot take)."""
        reference = SearchParams()
        names = ("direction", "sparse_fraction", "relinearize_every", "region")
        return {n: getattr(self, n) for n in names if getattr(self, n) != getattr(reference, n)}


def search_fields():
    """The SearchParams fields, in order, for building option lists (CLI) and argument lists (Slicer launcher)."""
    return fields(SearchParams)


def option_name(field_name: str) -> str:
    """``pred_diff`` -> ``--pred-diff``: the one spelling of a parameter on the command line."""
    return "--" + field_name.replace("_", "-")
