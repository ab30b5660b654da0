"""Make the repository root importable (CTCounterfactualLib) without installing it."""

import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
# the Slicer module folder: its scene package (CTCounterfactualScene) runs on PyPI slicer-core
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "CTCounterfactual"))

import pytest  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from one_thread import one_torch_thread  # noqa: E402
from slicer_harness.session import SLICER_VERSIONS  # noqa: E402

from CTCounterfactualLib.data.volume_io import Geometry, read_volume, write_volume  # noqa: E402
from CTCounterfactualLib.training.tiny_models import save_tiny_models  # noqa: E402

DATA_DIR = Path(__file__).resolve().parents[1] / "Data"


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
    return save_tiny_models(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture(scope="session")
def small_ct(tmp_path_factory) -> Path:
    """Slices 80:104 of the bundled CT, a 64x64 in-plane crop, as NRRD (24 x 64 x 64)."""
    return _crop_ct(tmp_path_factory.mktemp("small_ct") / "small_ct.nrrd", (80, 104), (20, 84), (30, 94))


@pytest.fixture(scope="session")
def long_ct(tmp_path_factory) -> Path:
    """All 112 slices of the bundled CT, a 64x64 in-plane crop, as NRRD (a job that runs for minutes)."""
    return _crop_ct(tmp_path_factory.mktemp("long_ct") / "long_ct.nrrd", (0, 112), (20, 84), (30, 94))


@pytest.fixture(scope="session")
def swept_run(tmp_path_factory, small_ct, tiny_model_files) -> Path:
    """A real ``ctcf explain --sweep`` of ``small_ct`` (scan, slices 4:20, chunks of 4): its output folder."""
    from cli_runner import run_main

    out = tmp_path_factory.mktemp("swept_run") / "result"
    ae, clf = tiny_model_files
    argv = ["explain", str(small_ct), "--out", str(out), "--autoencoder", str(ae), "--classifier", str(clf)]
    argv += ["--target", "effusion", "--slices", "4:20", "--chunk-size", "4", "--sweep", "--progress", "none"]
    argv += ["--max-steps", "200", "--lambda-sweep-steps", "4"]
    with one_torch_thread():
        assert run_main(argv) == 0
    return out


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
