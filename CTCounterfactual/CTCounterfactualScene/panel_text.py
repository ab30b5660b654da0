"""The panel's words for a running job (stage, done/total, elapsed, time left), a finished run, the chosen models."""

from __future__ import annotations

from .contract import metrics_lines
from .model_choices import ModelChoice
from .run_notes import NOT_AN_EXPLANATION, fidelity_line, flag_lines, warning_lines


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def progress_text(
    stage: str, message: str, done: int, total: int, elapsed: float, stage_elapsed: float | None = None
) -> str:
    """One status line: what runs, how far it is, how long the run took so far and (once known) how long
    the stage has left, from the stage's own pace (``stage_elapsed``: seconds since the stage began; the
    run's ``elapsed`` when not given)."""
    parts = [f"{stage}: {message}" if message else stage]
    if total:
        parts.append(f"{done}/{total}")
    parts.append(f"{duration(elapsed)} elapsed")
    if total and 0 < done < total:
        pace = (elapsed if stage_elapsed is None else stage_elapsed) / done
        parts.append(f"about {duration(pace * (total - done))} left")
    return " · ".join(parts)


def results_text(summary: dict) -> str:
    """The results box: flags first (not an explanation), the three predictions, the lambda found and the
    chunk the views show, the autoencoder's fidelity on this input, then the plausibility warnings."""
    p, chunk = summary["predictions"], summary["output_chunk"]
    target = summary["target"]["name"]
    lines = flag_lines(summary)
    lines.append(
        f"{target}: input {p['input']:.3f}, reconstruction {p['reconstruction']:.3f}, "
        f"counterfactual {p['counterfactual']:.3f}"
    )
    lines.append(f"lambda {chunk['lambda']:g}; shown: slices {chunk['start']}-{chunk['end'] - 1} ({summary['mode']})")
    lines += metrics_lines(summary)  # validity, proximity, concentration; with a region, what changing it did
    fidelity = fidelity_line(summary)
    if fidelity:
        lines.append(fidelity)
    lines += warning_lines(summary)
    return "\n".join(lines)


def results_title(summary: dict) -> str:
    """The results box's title: a flagged run says so before anything is read."""
    return f"Results - {NOT_AN_EXPLANATION.upper()}" if summary.get("flags") else "Results"


def done_text(seconds: float, summary: dict | None = None) -> str:
    """The status line after a run; a flagged run says it is not an explanation, with the first reason."""
    flags = flag_lines(summary or {})
    if flags:
        return f"{flags[0]} (done in {duration(seconds)}; see the results below)"
    return f"Done in {duration(seconds)}; the results are in the scene and below."


def size_text(n: int | None) -> str:
    """``3.7 MiB``, ``1.7 GiB``; ``size unknown`` before a download that publishes none."""
    if n is None:
        return "size unknown"
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def model_details(choice: ModelChoice | None, path: str = "") -> str:
    """What a chosen model is (the catalog's notes), its size and state, its licence and how to cite it; for a
    weights file chosen from disk, its path."""
    if choice is None:
        return f"{path}: a weights file you chose (no catalog entry: its licence and use are yours to check)"
    lines = [f"{choice.name} ({choice.state}, {size_text(choice.size_bytes)}): {choice.notes or 'no description'}"]
    lines.append(f"Licence: {choice.license or 'not stated in the catalog'}")
    if choice.citation:
        lines.append(f"Cite: {choice.citation}")
    return "\n".join(lines)
