"""Render the module's panel for the README and docs: the real .ui built by Qt offscreen, filled as after a run.

    .venv/bin/python docs/make_panel_screenshot.py out/demo/scan/summary.json docs/slicer_panel.png

The widgets are Qt's own (PySide6), with the CTK/qMRML classes drawn as their closest Qt widget
(Testing/Python/plain_qt_panel.py); the texts are the module's (panel_text) for the given run, and the model
details the module's for the bundled models (model_choices, read from the catalog).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "CTCounterfactual"), str(ROOT / "Testing" / "Python")]

from CTCounterfactualScene.model_choices import model_choices  # noqa: E402
from CTCounterfactualScene.panel_text import done_text, model_details, results_text  # noqa: E402
from CTCounterfactualScene.slice_choice import SLICE_CHOICES  # noqa: E402
from plain_qt_panel import load_panel  # noqa: E402
from PySide6 import QtCore, QtWidgets  # noqa: E402


def main(summary_json: str = "out/demo/scan/summary.json", png: str = "docs/slicer_panel.png") -> None:
    summary = json.loads(Path(summary_json).read_text(encoding="utf-8"))
    panel = load_panel()

    def find(name: str, cls=QtCore.QObject):
        return panel.findChild(cls, name)

    find("inputVolumeSelector").addItem("chest CT")
    find("autoencoderSelector").addItem("demo-vqgan (bundled)")
    find("classifierSelector").addItem("demo-effusion (bundled)")
    find("targetSelector").addItem(summary["target"]["name"])
    find("sliceChoiceSelector").addItems(list(SLICE_CHOICES))
    find("aroundSlicesSpinBox").setEnabled(False)
    first, stop = summary["slices"]
    find("sliceRangeWidget").setText(f"{first} – {stop - 1}")
    find("sliceRangeWidget").setEnabled(False)
    find("chunkSizeSpinBox").setValue(summary["chunk_size"])
    find("modeSelector").setCurrentText(summary["mode"])
    find("downloadModelButton").setVisible(False)
    choices = {c.name: c for kind in ("autoencoder", "classifier") for c in model_choices(kind)}
    find("modelDetailsLabel").setText("\n\n".join(model_details(choices[n]) for n in ("demo-vqgan", "demo-effusion")))
    seconds = sum(v for v in summary.get("timings_s", {}).values() if isinstance(v, (int, float)))
    find("statusLabel").setText(done_text(seconds))
    find("applyButton").setEnabled(True)
    find("resultsLabel").setText(results_text(summary))
    find("resultsCollapsibleButton").setVisible(True)
    find("heatmapThresholdSlider").setSuffix(" %")
    for name in ("advancedCollapsibleButton", "logCollapsibleButton"):
        box = find(name)
        for child in box.findChildren(QtWidgets.QWidget):
            child.setVisible(False)  # collapsed, as they open
        box.setMaximumHeight(28)
    panel.resize(460, 10)
    panel.adjustSize()
    for name, width in (("resultsLabel", 400), ("modelDetailsLabel", 420)):
        label = find(name)  # unshown, a word-wrapped label cannot size itself: measure its text at its width
        box = QtCore.QRect(0, 0, width, 10_000)
        label.setMinimumHeight(label.fontMetrics().boundingRect(box, QtCore.Qt.TextWordWrap, label.text()).height() + 4)
    panel.resize(460, panel.sizeHint().height())
    if not panel.grab().save(png):
        raise RuntimeError(f"cannot write {png}")
    print(png)


if __name__ == "__main__":
    main(*sys.argv[1:])
