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


# The longest modules first, longest first (seconds each took in a parallel run of `make test` on CPU-2): with
# `--no-loadscope-reorder` (Makefile) pytest-xdist hands modules out in this order, so none of them starts late
# and runs alone at the end. test_bundled_models last: it reads the demo run that test_cli's worker makes.
FIRST = (
    "test_evaluate.py",  # 300
    "test_cli.py",  # 270, the wheel and its demo run
    "test_evaluate_ray.py",  # 200, the user's-cohort run and its Ray repeat
    "test_evaluate_variants.py",  # 190
    "test_batch.py",  # 170
    "test_real_sizes.py",  # 110
    "test_slicer_engine.py",  # 100
    "test_memory_estimate.py",  # 70
    "test_errors.py",  # 50
)
LAST = ("test_bundled_models.py",)


def pytest_collection_modifyitems(items: list) -> None:
    def rank(item) -> int:
        name = item.path.name
        return FIRST.index(name) if name in FIRST else len(FIRST) + (name in LAST)

    items.sort(key=rank)  # stable: a module's own tests keep their order


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


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray (2 CPUs) for every Ray test of a module: starting Ray takes seconds. Its workers run at
    the test's own priority: Ray starts them at niceness 15 (its worker_niceness), and beside the suite's other
    workers they got next to no CPU (the local-vs-Ray fixture took 1006 s in one such run)."""
    import ray

    from CTCounterfactualLib.jobs.executors import local_ray_options

    before = os.environ.get("RAY_worker_niceness")
    os.environ["RAY_worker_niceness"] = "0"  # read by the raylet that ray.init starts
    ray.init(**local_ray_options(2))
    yield
    ray.shutdown()
    if before is None:
        del os.environ["RAY_worker_niceness"]
    else:
        os.environ["RAY_worker_niceness"] = before


# ``ctcf evaluate`` options of the user's-cohort run below, which the Ray test repeats on Ray
CSV_COHORT_OPTIONS = ["--chunk-size", "4", "--chunk-sizes", "joint", "--lungsize-volumes", "0"]
CSV_COHORT_OPTIONS += ["--variants", "detail-joint", "--sanity-volumes", "0", "--progress", "none"]


@pytest.fixture(scope="session")
def csv_cohort_run(tmp_path_factory) -> tuple[Path, Path]:
    """``ctcf evaluate --cohort`` of a user's CSV on the local pool (one worker): an 8-slice phantom with its
    effusion mask (NRRD) and one without (NIfTI), paths relative to the CSV. (cohort.csv, report folder); the CSV
    test reads the report, the Ray test runs ``CSV_COHORT_OPTIONS`` on Ray and compares."""
    from cli_runner import run_main

    from CTCounterfactualLib.data.phantom import LABELS, make_phantom
    from CTCounterfactualLib.training.classifier import random_effusion_spec

    def run(folder: Path) -> tuple[Path, Path]:
        pos = make_phantom(random_effusion_spec(777, True, slices=8))
        neg = make_phantom(random_effusion_spec(778, False, slices=8))
        (folder / "data").mkdir()
        write_volume(pos.hu, pos.geometry, folder / "data" / "a.nrrd")
        mask = (pos.labels == LABELS["effusion"]).astype("uint8")
        write_volume(mask, pos.geometry, folder / "data" / "a_mask.nrrd")
        write_volume(neg.hu, neg.geometry, folder / "data" / "b.nii.gz")
        cohort = folder / "cohort.csv"
        cohort.write_text("path,label,mask\ndata/a.nrrd,1,data/a_mask.nrrd\ndata/b.nii.gz,0,\n", encoding="utf-8")
        out = folder / "report"
        assert run_main(["evaluate", "--out", out, "--cohort", cohort, *CSV_COHORT_OPTIONS, "--workers", "1"]) == 0
        return cohort, out

    return made_once(tmp_path_factory, "csv_cohort_run", run)


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
