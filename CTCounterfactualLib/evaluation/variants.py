"""The search variants ``ctcf evaluate --variants`` compares, each one engine configuration run as a user would.

Every variant is an ``ExplainConfig`` built from the engine's own ``SearchParams`` (so what is measured is what
``ctcf explain`` with the same options does), plus which volumes it applies to and, for the region variants,
which region: the finding dilated by 5 mm (the question "is the evidence here?" where it is) or the same region
mirrored left-right (where it is not).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.params import SearchParams

if TYPE_CHECKING:  # the engine (torch) loads when variants run, not to build ctcf evaluate's parser
    from CTCounterfactualLib.method.config import ExplainConfig

ALL, POSITIVES, NEGATIVES = "all", "positives", "negatives"
FINDING, MIRROR = "finding", "mirror"


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    mode: str = "joint"
    search: dict = field(default_factory=dict)  # SearchParams fields that differ from the engine's defaults
    applies_to: str = ALL
    region: str | None = None  # FINDING, MIRROR or None

    def config(
        self, chunk_size: int, depth: int, batch_size: int, region: np.ndarray | None, sweep_steps: int | None = None
    ) -> ExplainConfig:
        from CTCounterfactualLib.method.config import ExplainConfig

        extra = {} if sweep_steps is None else {"lambda_sweep_steps": sweep_steps}
        search = SearchParams(**self.search, **extra, region="evaluation mask" if region is not None else "")
        return ExplainConfig(
            target=0,
            mode=self.mode,
            chunk_size=min(chunk_size, depth),
            batch_size=batch_size,
            search=search,
            region_mask=region,
        )

    def applies(self, label: int, has_mask: bool) -> bool:
        if self.region is not None and not has_mask:
            return False
        return self.applies_to == ALL or (self.applies_to == POSITIVES) == bool(label)


def _v(name: str, description: str, **kw) -> tuple[str, Variant]:
    return name, Variant(name, description, **kw)


VARIANTS: dict[str, Variant] = dict(
    [
        _v("decoded-scan", "the reference's decoded CF D(z'), one CF per chunk", mode="scan",
           search={"counterfactual": "decoded"}),
        _v("decoded-joint", "the reference's decoded CF D(z'), one CF over all slices",
           search={"counterfactual": "decoded"}),
        _v("detail-scan", "input + the decoder's change, one CF per chunk", mode="scan"),
        _v("detail-joint", "input + the decoder's change, one CF over all slices"),
        _v("sparse10-joint", "detail, the top 10 % latent positions of each slice", search={"sparse_fraction": 0.1}),
        _v("sparse05c-joint", "detail, the top 0.5 % latent positions of the volume",
           search={"sparse_fraction": 0.005, "sparse_scope": "chunk"}),
        _v("sparse1c-joint", "detail, the top 1 % latent positions of the volume",
           search={"sparse_fraction": 0.01, "sparse_scope": "chunk"}),
        _v("sparse2c-joint", "detail, the top 2 % latent positions of the volume",
           search={"sparse_fraction": 0.02, "sparse_scope": "chunk"}),
        _v("sparse2c-scan", "detail, the top 2 % latent positions of each chunk", mode="scan",
           search={"sparse_fraction": 0.02, "sparse_scope": "chunk"}),
        _v("iterative-joint", "detail, direction recomputed every 2 search steps", search={"relinearize_every": 2}),
        _v("iterative-sparse1c-joint", "detail, direction recomputed every 2 steps, each kept to its top 1 % positions",
           search={"relinearize_every": 2, "sparse_fraction": 0.01, "sparse_scope": "chunk"}),
        _v("region-joint", "detail, only over the finding (dilated 5 mm)", applies_to=POSITIVES, region=FINDING),
        _v("mirror-joint", "detail, only over the finding's left-right mirror (a control)", applies_to=POSITIVES,
           region=MIRROR),
        _v("raise-joint", "detail, --direction raise on the negatives", applies_to=NEGATIVES,
           search={"direction": "raise"}),
    ]
)  # fmt: skip
DEFAULT_VARIANTS = ("detail-joint", "decoded-joint")


def parse_variants(text: str) -> tuple[str, ...]:
    """'detail-joint,decoded-joint' -> names, each known; 'none' -> ()."""
    if text.strip().lower() == "none":
        return ()
    names = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise CTCFError(f"--variants {text!r}: use names from {', '.join(VARIANTS)} (comma-separated) or none")
    return tuple(dict.fromkeys(names))


def region_of(variant: Variant, dilated: np.ndarray) -> np.ndarray | None:
    """The variant's region on the volume: the dilated finding, or its mirror across the left-right axis."""
    if variant.region == FINDING:
        return dilated
    if variant.region == MIRROR:
        return np.ascontiguousarray(dilated[:, :, ::-1])
    return None


def describe(name: str) -> str:
    """One line for the report: the variant's mode, options and volumes."""
    v = VARIANTS[name]
    options = ", ".join(f"{k}={val}" for k, val in v.search.items()) or "engine defaults"
    defaults = SearchParams()
    kind = v.search.get("counterfactual", defaults.counterfactual)
    return f"`{name}`: {v.description} ({v.mode}, {kind} CF; {options}; volumes: {v.applies_to})"
