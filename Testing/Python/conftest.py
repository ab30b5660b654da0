"""Make the repository root importable (CTCounterfactualLib) without installing it; the shared fixtures, made
once per run also when the tests run in parallel (pytest-xdist, ``make test``)."""

import os
import pickle
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
# the Slicer module folder: its scene package (CTCounterfactualScene) runs on PyPI slicer-core
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "CTCounterfactual"))

import pytest  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402
from filelock import FileLock  # noqa: E402
from one_thread import one_torch_thread  # noqa: E402
from slicer_harness.session import SLICER_VERSIONS  # noqa: E402

from CTCounterfactualLib.data.volume_io import Geometry, read_volume, write_volume  # noqa: E402
from CTCounterfactualLib.training.tiny_models import save_tiny_models  # noqa: E402

DATA_DIR = Path(__file__).resolve().parents[1] / "Data"
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ... in a worker of a parallel run

if XDIST_WORKER:
    # several workers share the cores: one torch thread each (results do not depend on it, ``one_thread.py``)
    torch.set_num_threads(1)


def made_once(tmp_path_factory, name: str, make: Callable[[Path], object]) -> object:
    """``make(folder)``'s result, made once per test run: in a parallel run the first worker to ask makes it in a
    folder every worker sees, the others wait for it and read the same files (``make`` must be picklable-valued)."""
    root = tmp_path_factory.getbasetemp()
    if XDIST_WORKER:
        root = root.parent  # the run's folder; each worker's own is a sub-folder of it
    folder = root / f"made-once-{name}"
    result = root / f"made-once-{name}.pickle"
    with FileLock(str(root / f"made-once-{name}.lock")):
        if not result.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a worker whose ``make`` failed left
            folder.mkdir()
            value = make(folder)
            result.write_bytes(pickle.dumps(value))
    return pickle.loads(result.read_bytes())


def _crop_ct(dest: Path, z: tuple[int, int], y: tuple[int, int], x: tuple[int, int]) -> Path:
    """Write a crop of the bundled CT (array order z, y, x) to ``dest`` with the matching geometry."""
    source = DATA_DIR / "example_ct.nii.gz"
    vol = read_volume(source)
    image = sitk.ReadImage(str(source))
    origin = image.TransformIndexToPhysicalPoint((x[0], y[0], z[0]))
    geometry = Geometry(
        size=(x[1] - x[0], y[1] - y[0], z[1] - z[0]),
        spacing=vol.geometry.spacing,
        origin=tuple(float(v) for v in origin),
        direction=vol.geometry.direction,
    )
    write_volume(vol.array[z[0] : z[1], y[0] : y[1], x[0] : x[1]], geometry, dest)
    return dest


@pytest.fixture(scope="session")
def tiny_model_files(tmp_path_factory) -> tuple[Path, Path]:
    """(tiny VQ-GAN .ckpt, tiny TorchScript classifier .pt), each with its sidecar JSON."""
    return made_once(tmp_path_factory, "tiny_models", save_tiny_models)


@pytest.fixture(scope="session")
def small_ct(tmp_path_factory) -> Path:
    """Slices 80:104 of the bundled CT, a 64x64 in-plane crop, as NRRD (24 x 64 x 64)."""
    return made_once(
        tmp_path_factory, "small_ct", lambda d: _crop_ct(d / "small_ct.nrrd", (80, 104), (20, 84), (30, 94))
    )


@pytest.fixture(scope="session")
def long_ct(tmp_path_factory) -> Path:
    """All 112 slices of the bundled CT, a 64x64 in-plane crop, as NRRD (a job that runs for minutes)."""
    return made_once(tmp_path_factory, "long_ct", lambda d: _crop_ct(d / "long_ct.nrrd", (0, 112), (20, 84), (30, 94)))


@pytest.fixture(scope="session")
def swept_run(tmp_path_factory, small_ct, tiny_model_files) -> Path:
    """A real ``ctcf explain --sweep`` of ``small_ct`` (scan, slices 4:20, chunks of 4): its output folder."""
    from cli_runner import run_main

    def run(folder: Path) -> Path:
        out = folder / "result"
        ae, clf = tiny_model_files
        argv = ["explain", str(small_ct), "--out", str(out), "--autoencoder", str(ae), "--classifier", str(clf)]
        argv += ["--target", "effusion", "--slices", "4:20", "--chunk-size", "4", "--sweep", "--progress", "none"]
        argv += ["--max-steps", "200", "--lambda-sweep-steps", "4"]
        with one_torch_thread():
            assert run_main(argv) == 0
        return out

    return made_once(tmp_path_factory, "swept_run", run)


@pytest.fixture(scope="session")
def wheel_venv(tmp_path_factory) -> Path:
    """A fresh venv with the project's wheel installed (``wheel_install.py``)."""
    from wheel_install import install_wheel

    return made_once(tmp_path_factory, "wheel", install_wheel)


@pytest.fixture(scope="session")
def wheel_demo(tmp_path_factory, wheel_venv) -> tuple:
    """``ctcf demo --out demo --progress none`` of the installed wheel, run in an empty folder: (the finished
    process, that folder). One run of the demo (minutes) serves the CLI's and the wheel's tests."""
    from wheel_install import run_installed

    def run(folder: Path):
        proc = run_installed(wheel_venv, "demo", "--out", str(folder / "demo"), "--progress", "none", cwd=folder)
        return proc, folder

    return made_once(tmp_path_factory, "wheel_demo", run)


@pytest.fixture
def python_ctrl_c():
    """Python's own Ctrl-C handling in this process (and so SIG_DFL in the children it starts), whatever pytest
    inherited: a shell's background job (``cmd &`` in a script) starts with SIGINT ignored, which the children
    would keep and rightly never see a Ctrl-C."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="module")
def torch_on_one_thread():
    """The module's tests run torch on one thread (``one_thread.py`` says why)."""
    with one_torch_thread():
        yield


@pytest.fixture(params=SLICER_VERSIONS)
def slicer_app(request, tmp_path):
    """A Slicer session of each supported version with the module loaded (panel not opened yet)."""
    from slicer_module_stand import start_slicer

    session = start_slicer(request.param, tmp_path / f"slicer-{request.param}")
    yield session
    session.close()
