"""The run's caveats in the panel's words: flags (not an explanation), plausibility warnings, autoencoder fidelity."""

from __future__ import annotations

from .contract import params, protocol

NOT_AN_EXPLANATION = "Not an explanation"
# summary["fidelity"]: mean absolute HU error, slope and intercept of the reconstruction on the input (body)
MAE_HU, SLOPE, INTERCEPT, _BODY_VOXELS, OUTPUT_MAP = protocol.FIDELITY_KEYS


def flag_lines(summary: dict) -> list[str]:
    """One line per flag: the result is not to be read as an explanation, and why."""
    message = protocol.FLAG_KEYS[1]
    return [f"{NOT_AN_EXPLANATION}: {flag[message]}" for flag in summary.get("flags") or []]


def warning_lines(summary: dict) -> list[str]:
    """One line per plausibility warning (the input does not look like the CT the models expect)."""
    return [f"Warning: {text}" for text in summary.get("warnings") or []]


def fidelity_line(summary: dict) -> str | None:
    """How faithfully the autoencoder reproduces this input, marked when outside the engine's limits."""
    fid = summary.get("fidelity")
    if not fid:
        return None
    output_map = fid.get(OUTPUT_MAP) or summary.get("output_map")
    line = (
        f"Autoencoder fidelity (body): mean error {fid[MAE_HU]:.1f} HU, slope {fid[SLOPE]:.3f}, "
        f"intercept {fid[INTERCEPT]:.1f} HU" + (f", {output_map} output map" if output_map else "")
    )
    problems = []
    low, high = params.FIDELITY_SLOPE_RANGE
    if not (low <= fid[SLOPE] <= high):
        problems.append(f"slope outside {low:g}-{high:g}")
    if not (fid[MAE_HU] <= params.FIDELITY_MAX_MAE_HU):
        problems.append(f"error above {params.FIDELITY_MAX_MAE_HU:g} HU")
    if problems:
        line += f" - POOR FIT ({', '.join(problems)}): the counterfactual inherits it"
    return line
