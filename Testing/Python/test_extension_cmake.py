"""The extension configures and installs with CMake (Slicer stood in by Testing/CMake/SlicerStub): the module and
the engine land in the scripted-modules folder, each file installed once."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STUB = ROOT / "Testing" / "CMake" / "SlicerStub"
MODULES = Path("lib/Slicer-5.10/qt-scripted-modules")


@pytest.mark.skipif(shutil.which("cmake") is None, reason="CMake is not installed")
def test_the_extension_installs_the_module_and_the_engine_once(tmp_path):
    build, prefix = tmp_path / "build", tmp_path / "install"
    configure = subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(build), f"-DSlicer_DIR={STUB}", "-DBUILD_TESTING=OFF"],
        capture_output=True,
        text=True,
    )
    assert configure.returncode == 0, configure.stderr
    install = subprocess.run(
        ["cmake", "--install", str(build), "--prefix", str(prefix)], capture_output=True, text=True
    )
    assert install.returncode == 0, install.stderr
    lines = re.findall(r"-- (?:Installing|Up-to-date): (.*)", install.stdout)
    repeated = sorted({line for line in lines if lines.count(line) > 1})
    assert not repeated, f"installed more than once: {repeated[:3]}"
    installed = prefix / MODULES
    engine = sorted(p.relative_to(ROOT) for p in (ROOT / "CTCounterfactualLib").rglob("*.py"))
    assert all((installed / p).is_file() for p in engine)
    catalog = Path("CTCounterfactualLib/resources/models/catalog.json")
    assert (installed / catalog).read_bytes() == (ROOT / catalog).read_bytes()
    for script in ("CTCounterfactual.py", "CTCounterfactualScene/engine_server.py", "Resources/UI/CTCounterfactual.ui"):
        assert (installed / script).is_file(), script
