"""The built wheel is complete: installed into a fresh venv, its ``ctcf`` lists the models and runs the demo
(``wheel_install.py`` says how it is installed and why)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from wheel_install import CLEAN_ENV, ROOT, run_installed


def test_wheel_installs_the_engine_not_the_source_tree(wheel_venv: Path, tmp_path: Path):
    out = subprocess.run(
        [str(wheel_venv / "bin" / "python"), "-c", "import CTCounterfactualLib; print(CTCounterfactualLib.__file__)"],
        cwd=tmp_path,
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(wheel_venv) in out.stdout and str(ROOT) not in out.stdout


def test_wheel_lists_bundled_models(wheel_venv: Path, tmp_path: Path):
    r = run_installed(wheel_venv, "models", "list", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    bundled = [line.split()[0] for line in r.stdout.splitlines() if line.rstrip().endswith("bundled")]
    assert {"demo-vqgan", "demo-effusion", "demo-lungsize"} <= set(bundled)


def test_wheel_runs_the_demo(wheel_demo: tuple[subprocess.CompletedProcess, Path]):
    r, tmp_path = wheel_demo
    assert r.returncode == 0, r.stderr
    record = json.loads((tmp_path / "demo" / "demo.json").read_text(encoding="utf-8"))
    for mode in ("scan", "joint"):
        assert (tmp_path / "demo" / mode / "summary.json").is_file()
        assert record[mode]["predictions"]["counterfactual"] < record[mode]["predictions"]["input"]
    assert (tmp_path / "demo" / "report.png").stat().st_size > 10_000
