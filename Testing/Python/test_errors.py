"""``ctcf explain`` on bad inputs: a one-line ``ctcf: error: ...``, a non-zero exit, no traceback, no output.

Every case runs the real CLI as a subprocess on real files. The subprocesses of all cases are started
together (a few at a time) by one module fixture, so the module costs about one interpreter start-up
per core instead of one per case; each case is then checked by its own test.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from one_thread import ONE_THREAD_ENV

from CTCounterfactualLib.data.volume_io import read_volume, write_volume

REPO = Path(__file__).resolve().parents[2]
CUDA = torch.cuda.is_available()

# case -> (keywords the error line must contain (case-insensitive), extra CLI arguments)
# The input and models of each case are made by _prepare below.
CASES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "not_an_image": (("cannot read", "not_an_image.nrrd"), ()),
    "missing_input": (("not found", "does_not_exist.nrrd"), ()),
    "input_2d": (("2d", "3d ct volume"), ()),
    "input_4d": (("4d", "3d ct volume"), ()),
    "range_shorter_than_chunk": (("chunk size",), ("--slices", "0:4", "--chunk-size", "8")),
    "volume_shorter_than_default_chunk": (("chunk size", "3 slices"), ()),
    "constant_volume": (("constant",), ()),
    "nan_voxels": (("nan",), ()),
    "range_past_end": (("0:500", "outside"), ("--slices", "0:500")),
    "range_reversed": (("10:5", "empty"), ("--slices", "10:5")),
    "unknown_target": (("unknown target", "pneumonia", "effusion"), ("--target", "pneumonia")),
    "target_index_out_of_range": (("target index 5", "out of range"), ("--target", "5")),
    "vqgan_tensor_reshaped": (("does not fit", "encoder.conv_in.weight", "shape"), ()),
    "vqgan_tensor_removed": (("does not fit", "decoder.conv_out.bias", "missing"), ()),
    "classifier_outputs_mismatch": (("2 outputs", "3 targets"), ()),
    "classifier_without_sidecar": (("sidecar", "bare_classifier"), ()),
    "device_cuda_without_gpu": (("cuda", "--device cpu"), ("--device", "cuda")),
}


def _write_text_nrrd(path: Path) -> Path:
    path.write_text("this is a text file, not an image\n", encoding="utf-8")
    return path


def _prepare(root: Path, small_ct: Path, models: tuple[Path, Path]) -> dict[str, list[str]]:
    """Make every case's files under ``root``; return case -> argv (without the interpreter)."""
    ae, clf = models
    vol = read_volume(small_ct)
    geo = vol.geometry
    inputs = root / "inputs"
    inputs.mkdir()

    def image_file(name: str, array: np.ndarray, geometry=geo) -> Path:
        path = inputs / name
        write_volume(array.astype(np.float32), geometry, path)
        return path

    files: dict[str, Path] = {}
    files["not_an_image"] = _write_text_nrrd(inputs / "not_an_image.nrrd")
    files["missing_input"] = inputs / "does_not_exist.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(vol.array[5]), str(inputs / "slice_2d.nrrd"))
    files["input_2d"] = inputs / "slice_2d.nrrd"
    four_d = sitk.GetImageFromArray(np.stack([vol.array[:4, :16, :16]] * 2), isVector=False)
    assert four_d.GetDimension() == 4
    sitk.WriteImage(four_d, str(inputs / "volume_4d.nrrd"))
    files["input_4d"] = inputs / "volume_4d.nrrd"
    three = dataclasses.replace(geo, size=(geo.size[0], geo.size[1], 3))
    files["volume_shorter_than_default_chunk"] = image_file("three_slices.nrrd", vol.array[:3], three)
    files["constant_volume"] = image_file("constant.nrrd", np.full(vol.array.shape, -1000.0))
    nan = vol.array.copy()
    nan[3, 10:12, 20:25] = np.nan
    files["nan_voxels"] = image_file("nan.nrrd", nan)

    # models that do not fit
    ckpt = torch.load(ae, map_location="cpu", weights_only=True)
    sidecar_ae = json.loads(ae.with_suffix(".json").read_text(encoding="utf-8"))
    bad_models = root / "bad_models"
    bad_models.mkdir()
    reshaped = dict(ckpt["state_dict"])
    reshaped["encoder.conv_in.weight"] = reshaped["encoder.conv_in.weight"].reshape(-1)
    removed = dict(ckpt["state_dict"])
    del removed["decoder.conv_out.bias"]
    ae_paths = {}
    for case, state in (("vqgan_tensor_reshaped", reshaped), ("vqgan_tensor_removed", removed)):
        path = bad_models / f"{case}.ckpt"
        torch.save({"state_dict": state, "epoch": 3}, path)
        path.with_suffix(".json").write_text(json.dumps(sidecar_ae), encoding="utf-8")
        ae_paths[case] = path
    sidecar_clf = json.loads(clf.with_suffix(".json").read_text(encoding="utf-8"))
    assert len(sidecar_clf["targets"]) == 2
    three_targets = bad_models / "three_targets.pt"
    shutil.copyfile(clf, three_targets)
    three_targets.with_suffix(".json").write_text(
        json.dumps({**sidecar_clf, "targets": ["effusion", "lung size", "nodule"]}), encoding="utf-8"
    )
    bare = bad_models / "bare_classifier.pt"
    shutil.copyfile(clf, bare)
    clf_paths = {"classifier_outputs_mismatch": three_targets, "classifier_without_sidecar": bare}

    def argv(case: str, extra: tuple[str, ...]) -> list[str]:
        args = ["explain", str(files.get(case, small_ct)), "--out", str(root / "out" / case)]
        args += ["--autoencoder", str(ae_paths.get(case, ae)), "--classifier", str(clf_paths.get(case, clf))]
        args += ["--progress", "none"]
        if "--target" not in extra:
            args += ["--target", "effusion"]
        return args + list(extra)

    argvs = {case: argv(case, extra) for case, (_, extra) in CASES.items()}
    # argparse rejects a malformed range before the run starts
    argvs["bad_slices_string"] = argv("bad_slices_string", ("--slices", "abc"))
    return argvs


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "CTCounterfactualLib.cli", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=ONE_THREAD_ENV,
    )


@pytest.fixture(scope="module")
def error_runs(tmp_path_factory, small_ct, tiny_model_files) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    root = tmp_path_factory.mktemp("errors")
    argvs = _prepare(root, small_ct, tiny_model_files)
    if CUDA:
        del argvs["device_cuda_without_gpu"]
    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 2))) as pool:
        futures = {case: pool.submit(_run, argv) for case, argv in argvs.items()}
        return {case: (root / "out" / case, f.result()) for case, f in futures.items()}


def _check_failure(out: Path, proc: subprocess.CompletedProcess) -> str:
    """Common checks; returns the error message after ``ctcf: error: ``."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr  # the one error line and nothing else
    assert lines[0].startswith("ctcf: error: "), proc.stderr
    assert not out.exists(), f"{out} was created by a failing run"
    assert not out.parent.exists() or not any(".partial-" in p.name for p in out.parent.iterdir())
    return lines[0].removeprefix("ctcf: error: ")


@pytest.mark.parametrize("case", list(CASES))
def test_error_case(error_runs, case):
    if case == "device_cuda_without_gpu" and CUDA:
        pytest.skip("a CUDA GPU is available here")
    out, proc = error_runs[case]
    message = _check_failure(out, proc).lower()
    keywords, _ = CASES[case]
    for word in keywords:
        assert word.lower() in message, f"{word!r} not in {message!r}"
    assert proc.returncode == 2


def test_bad_slices_string_is_a_usage_error(error_runs):
    """Usage mistakes get the same one-line form: ``ctcf: error: argument --slices: ...``."""
    out, proc = error_runs["bad_slices_string"]
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("ctcf: error: argument --slices:")
    assert "'abc'" in lines[0] and "A:B" in lines[0] and "--help" in lines[0]
    assert not out.exists()


def test_no_case_created_the_output_parent(error_runs):
    """The output folders' common parent is only made when something is written: never, here."""
    parents = {out.parent for out, _ in error_runs.values()}
    assert len(parents) == 1
    assert not parents.pop().exists()
