"""The project's wheel, built and installed into a fresh venv, and its ``ctcf`` run from outside the source tree.

An editable install (what ``make`` uses) reads the source tree and would hide a missing sub-package or a bundled
model left out of the wheel. The wheel's dependencies are the ones the tests run with (the pinned versions,
already installed): the fresh venv sees them through a ``.pth`` file, as plain folders whose own ``.pth`` files
(the editable install's among them) are not run, and pip installs the wheel offline, so a dependency the wheel
declares that is not there fails the install. Copying torch into the venv again would test pip, not the wheel.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# the wheel's venv must see nothing of the source tree or of the development install
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


def install_wheel(folder: Path) -> Path:
    """Build the wheel into ``folder/dist`` and install it into the venv ``folder/venv``; returns the venv."""
    dist = folder / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(ROOT)],
        check=True,
        cwd=folder,
        env=CLEAN_ENV,
    )
    (wheel,) = dist.glob("ctcounterfactual-*.whl")
    env_dir = folder / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], check=True, capture_output=True, text=True
    ).stdout.strip()
    Path(purelib, "test_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n", encoding="utf-8")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-index", "--disable-pip-version-check"]
        + ["-c", str(ROOT / "constraints.txt"), str(wheel)],
        check=True,
        cwd=folder,
        env=CLEAN_ENV,
    )
    return env_dir


def run_installed(env_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The installed ``ctcf`` console script with ``args``, in ``cwd``."""
    return subprocess.run(
        [str(env_dir / "bin" / "ctcf"), *args], cwd=cwd, env=CLEAN_ENV, capture_output=True, text=True, timeout=900
    )
