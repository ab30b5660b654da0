"""The panel's words for a running job (stage, done/total, elapsed, time left) and for a finished run."""

from __future__ import annotations


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def progress_text(stage: str, message: str, done: int, total: int, elapsed: float) -> str:
    """One status line: what runs, how far it is, how long it took so far and (once known) how long is left."""
    parts = [f"{stage}: {message}" if message else stage]
    if total:
        parts.append(f"{done}/{total}")
    parts.append(f"{duration(elapsed)} elapsed")
    if total and 0 < done < total:
        parts.append(f"about {duration(elapsed / done * (total - done))} left")
    return " · ".join(parts)


def results_text(summary: dict) -> str:
    """The results box: the three predictions, the lambda found and the chunk the views show."""
    p, chunk = summary["predictions"], summary["output_chunk"]
    target = summary["target"]["name"]
    return (
        f"{target}: input {p['input']:.3f}, reconstruction {p['reconstruction']:.3f}, "
        f"counterfactual {p['counterfactual']:.3f}\n"
        f"lambda {chunk['lambda']:g}; shown: slices {chunk['start']}-{chunk['end'] - 1} ({summary['mode']})"
    )


def done_text(seconds: float) -> str:
    return f"Done in {duration(seconds)}; the results are in the scene and below."
