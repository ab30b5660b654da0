"""The warm engine behind Generate: one process per Slicer session, models and the input's encoding kept between
runs, a crash reported and replaced, stopped with Slicer; its output in Slicer's application log."""

from __future__ import annotations

import logging
import os
import signal
import time

from slicer_module_stand import NAME, SKIP, load_volume, run_timer_until_idle, scalar_volume_names

pytestmark = SKIP
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _panel(slicer_app, ct, monkeypatch):
    for key, value in ONE_THREAD.items():
        monkeypatch.setenv(key, value)  # the engine inherits Slicer's startup environment
    slicer_app.startup_env.update(ONE_THREAD)
    node = load_volume(slicer_app, ct, "chest")
    widget = slicer_app.open_panel(NAME)
    ui = widget.ui
    ui.maxStepsSpinBox.value = 200
    ui.sweepStepsSpinBox.value = 3
    return widget, node


def test_a_second_generate_reuses_the_models_and_the_encoding(slicer_app, small_ct, monkeypatch, caplog):
    widget, _ = _panel(slicer_app, small_ct, monkeypatch)
    ui = widget.ui
    ui.sliceChoiceSelector.activate(ui.sliceChoiceSelector.findText("Custom range"))
    ui.sliceRangeWidget.setValues(4, 11)
    ui.chunkSizeSpinBox.value = 4
    caplog.set_level(logging.INFO)
    ui.applyButton.click()
    first = widget.job
    run_timer_until_idle(widget)
    assert ui.statusLabel.text.startswith("Done"), ui.statusLabel.text + ui.logText.plainText
    engine = slicer_app.modules[NAME].warmEngine()
    pid = engine.process.pid
    assert first.process.reused == []
    ui.chunkSizeSpinBox.value = 8  # the user tries another chunk size on the same CT
    ui.applyButton.click()
    second = widget.job
    stages = []
    while widget.job is not None:
        stages += [e["stage"] for e in second.process.poll()]
        widget.timer.fire()
        time.sleep(0.2)
    assert ui.statusLabel.text.startswith("Done"), ui.statusLabel.text
    assert second.process.reused == ["models", "encoding", "gradient"]
    assert "search" in stages and not {"encode", "decode", "gradient"} & set(stages)
    assert engine.process.pid == pid and engine.starts == 1
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("CT Counterfactual engine: ")]
    assert any(m.startswith("CT Counterfactual engine: search: ") for m in logged)
    assert logged[-1] == "CT Counterfactual engine: " + ui.statusLabel.text  # the outcome, as the panel says it


def test_an_engine_crash_is_reported_and_the_next_generate_starts_a_new_engine(slicer_app, long_ct, monkeypatch):
    widget, _ = _panel(slicer_app, long_ct, monkeypatch)
    ui = widget.ui
    ui.chunkSizeSpinBox.value = 4
    ui.batchSizeSpinBox.value = 1
    before = scalar_volume_names(slicer_app.scene)
    ui.applyButton.click()
    job = widget.job
    while job.process.last is None or job.process.last["stage"] not in ("encode", "decode", "gradient", "search"):
        assert job.process.state == "running", ui.logText.plainText
        widget.timer.fire()
        time.sleep(0.2)
    engine = slicer_app.modules[NAME].warmEngine()
    os.kill(engine.process.pid, signal.SIGKILL)  # the engine dies (out of memory, a crash in native code)
    run_timer_until_idle(widget)
    assert ui.statusLabel.text.startswith("Failed") and "stopped unexpectedly" in ui.statusLabel.text
    assert not os.path.exists(job.workdir) and scalar_volume_names(slicer_app.scene) == before
    ui.sliceChoiceSelector.activate(ui.sliceChoiceSelector.findText("Custom range"))
    ui.sliceRangeWidget.setValues(40, 47)
    ui.applyButton.click()
    run_timer_until_idle(widget)
    assert "done in" in ui.statusLabel.text.lower(), ui.statusLabel.text + ui.logText.plainText
    assert engine.starts == 2 and scalar_volume_names(slicer_app.scene) != before  # a new engine, the results in


def test_the_engine_ends_with_slicer(slicer_app, small_ct, monkeypatch):
    widget, _ = _panel(slicer_app, small_ct, monkeypatch)
    widget.ui.sliceChoiceSelector.activate(widget.ui.sliceChoiceSelector.findText("Custom range"))
    widget.ui.sliceRangeWidget.setValues(4, 11)
    widget.ui.applyButton.click()
    run_timer_until_idle(widget)
    process = slicer_app.modules[NAME].warmEngine().process
    assert process.poll() is None  # idle, kept for the next run
    slicer_app.unload(widget)  # Slicer quits: the module is unloaded
    assert process.wait(timeout=30) == 0
