"""The results box and status line after a run: flags say "Not an explanation", warnings and fidelity are shown."""

from __future__ import annotations

import json
import shutil
import sys

from slicer_module_stand import NAME, SKIP, load_volume, run_timer_until_idle

from CTCounterfactualLib import params
from CTCounterfactualLib.data.volume_io import Volume, read_volume
from CTCounterfactualLib.jobs.checks import result_flags, volume_warnings
from CTCounterfactualLib.protocol import FIDELITY_KEYS, SUMMARY_JSON

pytestmark = SKIP


def _result(swept_run, folder, **summary_changes):
    """A copy of a real run's output folder whose summary.json carries ``summary_changes``."""
    shutil.copytree(swept_run, folder)
    summary = json.loads((folder / SUMMARY_JSON).read_text(encoding="utf-8"))
    summary.update(summary_changes)
    (folder / SUMMARY_JSON).write_text(json.dumps(summary), encoding="utf-8")
    return summary


def _show(slicer_app, widget, node, out_dir, name):
    """The panel finishing a run whose engine wrote ``out_dir`` (as after Generate, then the timer)."""
    from CTCounterfactualScene.engine_process import EngineProcess

    module = slicer_app.modules[NAME]
    workdir = slicer_app.home / "tmp" / name
    workdir.mkdir()
    job = module.EngineJob(EngineProcess([sys.executable, "-c", "pass"]), str(workdir), str(out_dir), node, "explain")
    widget.watchJob(job, "Starting the engine...")
    run_timer_until_idle(widget, limit_s=60)


def test_flagged_run_is_not_presented_as_an_explanation(slicer_app, small_ct, swept_run, tmp_path):
    node = load_volume(slicer_app, small_ct, "chest")
    widget = slicer_app.open_panel(NAME)
    ui = widget.ui
    ct = read_volume(small_ct)
    # what the engine writes for a CF that did not lower the prediction, on a uint8 input, with a poor autoencoder
    flags = result_flags({"input": 0.7, "reconstruction": 0.7}, chunk_before=0.6, chunk_cf=0.65)
    warnings = volume_warnings(Volume(ct.array, ct.geometry, "", "uint8"), {})
    fidelity = dict(zip(FIDELITY_KEYS, (212.5, 0.42, -301.0, 5000, "reference"), strict=True))
    summary = _result(swept_run, tmp_path / "flagged", flags=flags, warnings=warnings, fidelity=fidelity)
    _show(slicer_app, widget, node, tmp_path / "flagged", "flagged")

    expected = f"Not an explanation: {flags[0]['message']}"
    assert ui.statusLabel.text.startswith(expected) and "Done" not in ui.statusLabel.text
    assert ui.resultsCollapsibleButton.visible and "NOT AN EXPLANATION" in ui.resultsCollapsibleButton.text
    lines = ui.resultsLabel.text.splitlines()
    assert lines[0] == expected  # before the predictions
    assert f"counterfactual {summary['predictions']['counterfactual']:.3f}" in lines[1]
    (fid,) = [line for line in lines if line.startswith("Autoencoder fidelity")]
    assert "212.5 HU" in fid and "slope 0.420" in fid and "-301.0 HU" in fid and "reference output map" in fid
    low, high = params.FIDELITY_SLOPE_RANGE
    assert f"POOR FIT (slope outside {low:g}-{high:g}, error above {params.FIDELITY_MAX_MAE_HU:g} HU)" in fid
    assert warnings and [line for line in lines if line.startswith("Warning: ")] == [f"Warning: {w}" for w in warnings]

    # the next run, as the engine wrote it (its own fidelity record), without flags or warnings
    summary = _result(swept_run, tmp_path / "clean", flags=[], warnings=[])
    _show(slicer_app, widget, node, tmp_path / "clean", "clean")
    assert ui.statusLabel.text.startswith("Done") and ui.resultsCollapsibleButton.text == "Results"
    lines = ui.resultsLabel.text.splitlines()
    assert lines[0].startswith(f"{summary['target']['name']}: input")
    assert not [line for line in lines if line.startswith(("Not an explanation", "Warning"))]
    real = summary["fidelity"]
    (fid,) = [line for line in lines if line.startswith("Autoencoder fidelity")]
    assert f"mean error {real['mae_hu_body']:.1f} HU" in fid and f"slope {real['slope']:.3f}" in fid
