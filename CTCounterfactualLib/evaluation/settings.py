"""What ``ctcf evaluate`` runs on each volume: the chunk sizes of the sweep and the main chunk size."""

from __future__ import annotations

from dataclasses import dataclass

from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.params import SearchParams

DEFAULT_SWEEP = "1,5,10,12,20,all,joint"
WHOLE = ("all", "joint")  # one chunk over the whole range: the same computation in this engine
NO_SWEEP = "none"  # --chunk-sizes none: no reference-engine runs (chunk sweep, Table 1's scan, identity)


@dataclass(frozen=True)
class EvalSettings:
    chunk_size: int = 12  # Table 1, localization, identity (the paper's)
    sweep: tuple[str, ...] = tuple(DEFAULT_SWEEP.split(","))
    batch_size: int = 8
    lungsize: bool = True
    saliency: bool = True
    variants: tuple[str, ...] = ()  # names from evaluation/variants.py, each run through the engine as is
    sweep_steps: int | None = None  # the variants' lambda_sweep_steps; None = the engine's default
    sanity: bool = False  # the model-randomization check on this volume

    def entries(self) -> list[str]:
        """The sweep entries plus the main chunk size and joint, which the other parts need (none without a sweep)."""
        if not self.sweep:
            return []
        out = list(self.sweep)
        for e in (str(self.chunk_size), "joint"):
            if e not in out:
                out.append(e)
        return out


def parse_sweep(text: str) -> tuple[str, ...]:
    """'1,5,12,all,joint' -> ('1', '5', '12', 'all', 'joint'); chunk sizes must be positive integers; 'none' -> ()."""
    if text.strip().lower() == NO_SWEEP:
        return ()
    entries = []
    for part in text.split(","):
        p = part.strip().lower()
        if not p:
            continue
        if p not in WHOLE and not (p.isdigit() and int(p) > 0):
            raise CTCFError(f"--chunk-sizes entry {part!r} is not a chunk size (a positive integer), 'all' or 'joint'")
        if p not in entries:
            entries.append(p)
    if not entries:
        raise CTCFError("--chunk-sizes is empty: give chunk sizes, e.g. 1,5,12,all,joint")
    return tuple(entries)


def chunk_size_for(entry: str, depth: int) -> int:
    """The chunk size an entry means on a volume of ``depth`` slices (capped at the depth)."""
    return depth if entry in WHOLE else min(int(entry), depth)


def reference_engine() -> dict:
    """ExplainConfig fields that keep the engine on the reference's numbers (the evaluation recomputes its
    frames along the raw gradient at the input's resolution): raw-gradient lambda, input grid, reference map, the
    decoded CF D(z')."""
    search = SearchParams(lambda_scale="reference", counterfactual="decoded")
    return dict(search=search, search_resolution="input", output_map="reference")
