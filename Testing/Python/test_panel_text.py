"""The panel's status and results wording, from real progress numbers and a real run's summary."""

from __future__ import annotations

import json

from CTCounterfactualScene.panel_text import done_text, duration, progress_text, results_text, results_title


def test_durations():
    assert [duration(s) for s in (0.4, 42, 185, 3725)] == ["0 s", "42 s", "3 min 05 s", "1 h 02 min"]


def test_progress_line_has_stage_count_elapsed_and_time_left():
    line = progress_text("search", "chunk 2 of 4", 1, 4, 30.0)
    assert line == "search: chunk 2 of 4 · 1/4 · 30 s elapsed · about 1 min 30 s left"
    assert progress_text("load", "", 0, 0, 2.0) == "load · 2 s elapsed"  # no count, no estimate yet


def test_time_left_follows_the_stage_not_the_stages_before_it():
    # 100 s into the run, 10 s into the search, 2 of 10 steps done: 8 steps at 5 s, not at 50 s
    line = progress_text("search", "m", 2, 10, 100.0, stage_elapsed=10.0)
    assert line.endswith("1 min 40 s elapsed · about 40 s left")


def test_results_text_from_a_run(swept_run):
    summary = json.loads((swept_run / "summary.json").read_text(encoding="utf-8"))
    text = results_text(summary)
    chunk = summary["output_chunk"]
    assert f"slices {chunk['start']}-{chunk['end'] - 1}" in text
    assert f"counterfactual {summary['predictions']['counterfactual']:.3f}" in text


def test_done_text():
    assert done_text(185) == "Done in 3 min 05 s; the results are in the scene and below."


def test_flagged_run_says_not_an_explanation_first():
    flag = {"code": "cf_not_lower", "message": "the counterfactual's prediction is not below the reconstruction's"}
    summary = {
        "predictions": {"input": 0.7, "reconstruction": 0.68, "counterfactual": 0.69},
        "output_chunk": {"start": 4, "end": 8, "lambda": 2.5},
        "target": {"name": "effusion"},
        "mode": "scan",
        "flags": [flag],
        "warnings": ["the input's voxels are uint8"],
    }
    expected = f"Not an explanation: {flag['message']}"
    assert done_text(65, summary) == f"{expected} (done in 1 min 05 s; see the results below)"
    lines = results_text(summary).splitlines()
    assert lines[0] == expected and lines[-1] == "Warning: the input's voxels are uint8"
    assert results_title(summary) == "Results - NOT AN EXPLANATION" and results_title({"flags": []}) == "Results"
