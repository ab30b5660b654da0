"""Render the module's linked result views for docs/slicer.md from a demo run (``make demo`` first).

    .venv/bin/python docs/make_slicer_screenshot.py out/demo docs/slicer_views.png

Uses the same scene logic the module runs in Slicer, on a bare slicer-core scene, rendered headless
through vtkMRMLSliceLogic (Testing/Python/test_slicer_export.py checks that rendering).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "CTCounterfactual"), str(ROOT / "Testing" / "Python")]

from CTCounterfactualScene.results_to_scene import load_results  # noqa: E402
from CTCounterfactualScene.slice_render import render_linked_views  # noqa: E402
from mrml_scene import add_input, new_scene  # noqa: E402


def main(demo: str = "out/demo", png: str = "docs/slicer_views.png") -> None:
    scene = new_scene()
    node, _ = add_input(scene, Path(demo) / "input.nrrd", "demo CT")
    load_results(scene, node, Path(demo) / "scan")
    node.GetDisplayNode().SetAutoWindowLevel(False)
    node.GetDisplayNode().SetWindowLevel(1500, -300)  # a lung window shows the effusion and the lung
    cf = scene.GetFirstNodeByName("demo CT CF pleural effusion counterfactual")
    cf.GetDisplayNode().SetAutoWindowLevel(False)
    cf.GetDisplayNode().SetWindowLevel(1500, -300)
    print(render_linked_views(scene, png, size=(360, 360)))


if __name__ == "__main__":
    main(*sys.argv[1:])
