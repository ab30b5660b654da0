"""The built wheel is complete: installed into a fresh venv, its ``ctcf`` lists the models and runs the demo.

An editable install (what ``make`` uses) reads the source tree and would hide a missing sub-package
or a bundled model left out of the wheel; this test installs the wheel alone and runs it from a
folder outside the source tree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# the wheel's venv must see nothing of the source tree or the development venv
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(ROOT)],
        check=True,
        cwd=tmp,
        env=CLEAN_ENV,
    )
    (wheel,) = dist.glob("ctcounterfactual-*.whl")
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [py, "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), str(wheel)],
        check=True,
        cwd=tmp,
        env=CLEAN_ENV,
    )
    return env_dir


def _run(env_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(env_dir / "bin" / "ctcf"), *args], cwd=cwd, env=CLEAN_ENV, capture_output=True, text=True, timeout=900
    )


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
    r = _run(wheel_venv, "models", "list", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    bundled = [line.split()[0] for line in r.stdout.splitlines() if line.rstrip().endswith("bundled")]
    assert {"demo-vqgan", "demo-effusion", "demo-lungsize"} <= set(bundled)


def test_wheel_runs_the_demo(wheel_venv: Path, tmp_path: Path):
    r = _run(wheel_venv, "demo", "--out", str(tmp_path / "demo"), "--progress", "none", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    record = json.loads((tmp_path / "demo" / "demo.json").read_text())
    for mode in ("scan", "joint"):
        assert (tmp_path / "demo" / mode / "summary.json").is_file()
        assert record[mode]["predictions"]["counterfactual"] < record[mode]["predictions"]["input"]
    assert (tmp_path / "demo" / "report.png").stat().st_size > 10_000
