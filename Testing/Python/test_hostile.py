"""``ctcf`` against hostile inputs: refused with one line, never overwriting an input, never hanging.

Each case runs the real CLI on real files (a crop of the bundled CT, tiny real torch models, and damaged or
malicious variants made here). Cases that could block (pipes) run as subprocesses with a time limit; the rest
run in-process, with file-descriptor capture so that messages printed by ITK's C++ code are seen too.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import run_main
from one_thread import ONE_THREAD_ENV
from torch import nn

from CTCounterfactualLib.data.volume_io import Geometry, read_volume, write_volume
from CTCounterfactualLib.models.classifier import save_torchscript
from CTCounterfactualLib.protocol import SUMMARY_JSON

REPO = Path(__file__).resolve().parents[2]
FAST = ("--progress", "none", "--max-steps", "40", "--lambda-sweep-steps", "3", "--chunk-size", "8")


pytestmark = pytest.mark.usefixtures("torch_on_one_thread")


# ------------------------------------------------------------------------------------------- hostile models


class _Flat(nn.Module):
    """Needs exactly 1000 input voxels: any real volume gives a matrix shape error."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1000, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


class _Detached(nn.Module):
    """Returns numbers with no gradient (as a thresholded or detached classifier does)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.detach().mean()
        return torch.stack([m, m])[None]


class _NaN(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean() * float("nan")
        return torch.stack([m, m])[None]


class _Flat0(nn.Module):
    """Differentiable, but its output does not depend on the input: the CF cannot lower it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean() * 0.0 + 1.0
        return torch.stack([m, m])[None]


def _classifier(folder: Path, name: str, module: nn.Module, sidecar: dict) -> Path:
    path = folder / f"{name}.pt"
    save_torchscript(module.eval(), path)
    path.with_suffix(".json").write_text(json.dumps(sidecar), encoding="utf-8")
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, small_ct, tiny_model_files) -> dict:
    """Every hostile file, by name; plus the good models ('ae', 'clf') and the good CT ('ct')."""
    root = tmp_path_factory.mktemp("hostile")
    ae, clf = tiny_model_files
    f: dict = {"root": root, "ae": ae, "clf": clf, "ct": small_ct}
    vol = read_volume(small_ct)
    geo = vol.geometry
    ae_meta = json.loads(ae.with_suffix(".json").read_text(encoding="utf-8"))
    clf_meta = json.loads(clf.with_suffix(".json").read_text(encoding="utf-8"))
    models = root / "models"
    models.mkdir()

    # damaged images
    for ext in (".nii", ".nii.gz", ".mha"):
        whole = root / f"whole{ext}"
        write_volume(vol.array, geo, whole)
        data = whole.read_bytes()
        (root / f"half{ext}").write_bytes(data[: len(data) // 2])
        f[f"half{ext}"] = root / f"half{ext}"
    data = bytearray((root / "whole.nii.gz").read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # zeros inside the deflate stream
    (root / "scrambled.nii.gz").write_bytes(bytes(data))
    f["scrambled.nii.gz"] = root / "scrambled.nii.gz"
    f["whole.nii.gz"] = root / "whole.nii.gz"

    # autoencoders
    (models / "text.ckpt").write_text("model weights: see the wiki\n", encoding="utf-8")
    (models / "text.json").write_text(json.dumps(ae_meta), encoding="utf-8")
    f["ae_text"] = models / "text.ckpt"
    for name, arch in (
        ("arch_unknown", {**ae_meta["architecture"], "depth": 3}),
        ("arch_typed", {**ae_meta["architecture"], "ch": "8"}),
    ):
        shutil.copyfile(ae, models / f"{name}.ckpt")
        (models / f"{name}.json").write_text(json.dumps({**ae_meta, "architecture": arch}), encoding="utf-8")
        f[f"ae_{name}"] = models / f"{name}.ckpt"
    shutil.copyfile(ae, models / "no_convention.ckpt")
    no_conv = {k: v for k, v in ae_meta.items() if k != "convention"}
    (models / "no_convention.json").write_text(json.dumps(no_conv), encoding="utf-8")
    f["ae_no_convention"] = models / "no_convention.ckpt"
    (models / "convention_only.json").write_text(json.dumps(ae_meta["convention"]), encoding="utf-8")
    f["convention_file"] = models / "convention_only.json"
    ckpt = torch.load(ae, map_location="cpu", weights_only=True)
    state = dict(ckpt["state_dict"])
    state["decoder.conv_out.bias"] = torch.full_like(state["decoder.conv_out.bias"], float("nan"))
    torch.save({"state_dict": state}, models / "nan_decoder.ckpt")
    (models / "nan_decoder.json").write_text(json.dumps(ae_meta), encoding="utf-8")
    f["ae_nan_decoder"] = models / "nan_decoder.ckpt"
    shutil.copyfile(ae, models / "list_sidecar.ckpt")
    (models / "list_sidecar.json").write_text("[1, 2]", encoding="utf-8")
    f["ae_list_sidecar"] = models / "list_sidecar.ckpt"
    (models / "broken.yaml").write_text("model:\n  params: [1, 2\n  ddconfig: {ch: 8}\n", encoding="utf-8")
    f["broken_yaml"] = models / "broken.yaml"

    # classifiers
    f["clf_flat"] = _classifier(models, "flat", _Flat(), clf_meta)
    f["clf_detached"] = _classifier(models, "detached", _Detached(), clf_meta)
    f["clf_nan"] = _classifier(models, "nan", _NaN(), clf_meta)
    f["clf_constant"] = _classifier(models, "constant", _Flat0(), clf_meta)
    for name, meta in (
        ("window_wide", {**clf_meta, "convention": {**clf_meta["convention"], "window": "wide"}}),
        ("threshold_high", {**clf_meta, "threshold": "high"}),
        ("sigmoid_yes", {**clf_meta, "apply_sigmoid": "yes"}),
    ):
        shutil.copyfile(clf, models / f"{name}.pt")
        (models / f"{name}.json").write_text(json.dumps(meta), encoding="utf-8")
        f[f"clf_{name}"] = models / f"{name}.pt"

    # volumes that are not plausible CT
    blank = np.full(vol.array.shape, 3000.0, dtype=np.float32) + np.arange(vol.array.shape[2], dtype=np.float32)
    write_volume(blank, geo, root / "bright.nrrd")
    f["bright"] = root / "bright.nrrd"
    write_volume(np.clip(vol.array + 1024, 0, 255).astype(np.uint8), geo, root / "uint8.nrrd")
    f["uint8"] = root / "uint8.nrrd"

    # where outputs would replace inputs
    study = root / "study"
    study.mkdir()
    shutil.copyfile(small_ct, study / "counterfactual.nrrd")
    f["study"] = study
    linked = root / "linked"
    linked.mkdir()
    shutil.copyfile(small_ct, root / "scan.nrrd")
    os.link(root / "scan.nrrd", linked / "heatmap.nrrd")  # a hard link: same inode, another name
    f["scan"], f["linked"] = root / "scan.nrrd", linked
    os.symlink(study, root / "study_link")
    f["study_link"] = root / "study_link"
    (root / "swept" / "sweep").mkdir(parents=True)
    shutil.copyfile(small_ct, root / "swept" / "sweep" / "frame_00.nrrd")
    f["swept"] = root / "swept"
    (root / "a_file").write_text("not a folder\n", encoding="utf-8")
    f["a_file"] = root / "a_file"
    (root / "no_dicom").mkdir()
    (root / "no_dicom" / "notes.txt").write_text("no images here\n", encoding="utf-8")
    f["no_dicom"] = root / "no_dicom"
    return f


def _run(capfd, *argv) -> tuple[int, str, str]:
    code = run_main(list(argv))
    out, err = capfd.readouterr()
    return code, out, err


def _explain(f: dict, input_path, out, *extra, ae=None, clf=None) -> list:
    argv = ["explain", input_path, "--out", out, "--autoencoder", ae or f["ae"], "--classifier", clf or f["clf"]]
    return [*argv, "--target", "effusion", *FAST, *extra]


def _one_error_line(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("ctcf: error: "), err
    return lines[0].lower()


def _refused(capfd, f, input_path, *extra, keywords=(), ae=None, clf=None, out=None) -> str:
    """Runs ``ctcf explain`` expecting the one-line refusal; no output folder may appear."""
    out = out or f["root"] / "out" / "refused"
    existed = out.exists()
    code, _, err = _run(capfd, *_explain(f, input_path, out, *extra, ae=ae, clf=clf))
    assert out.exists() == existed, f"{out} was created by a refused run"
    line = _one_error_line(code, err)
    for word in keywords:
        assert word.lower() in line, line
    return line


# ------------------------------------------------------------------------------------------- outputs and inputs


def test_output_that_would_replace_the_input_is_refused_before_any_work(capfd, hostile):
    f = hostile
    before = _sha(f["study"] / "counterfactual.nrrd")
    code, _, err = _run(capfd, *_explain(f, f["study"] / "counterfactual.nrrd", f["study"]))
    line = _one_error_line(code, err)
    assert "would overwrite the input" in line
    assert _sha(f["study"] / "counterfactual.nrrd") == before
    assert sorted(p.name for p in f["study"].iterdir()) == ["counterfactual.nrrd"]


def test_hard_link_and_symlinked_folder_are_compared_by_inode(capfd, hostile):
    f = hostile
    _refused(capfd, f, f["scan"], out=f["linked"], keywords=("would overwrite the input", "heatmap.nrrd"))
    _refused(capfd, f, f["study"] / "counterfactual.nrrd", out=f["study_link"], keywords=("would overwrite",))
    assert _sha(f["scan"]) == _sha(f["ct"])


def test_input_inside_the_sweep_folder_a_run_replaces_is_refused(capfd, hostile):
    f = hostile
    frame = f["swept"] / "sweep" / "frame_00.nrrd"
    _refused(capfd, f, frame, out=f["swept"], keywords=("sweep", "holds the input"))
    assert frame.is_file()


def test_out_below_a_file_fails_early(capfd, hostile):
    _refused(capfd, hostile, hostile["ct"], out=hostile["a_file"] / "result", keywords=("is below", "a_file"))


def test_out_in_a_read_only_folder_fails_early(capfd, hostile, tmp_path):
    if os.geteuid() == 0:  # root writes through permission bits; sysfs is read-only for it too
        target = Path("/sys/ctcf-result")
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        target = locked / "result"
    line = _refused(capfd, hostile, hostile["ct"], out=target, keywords=("cannot write to --out",))
    assert str(target.parent).lower() in line
    assert not target.exists()


def test_input_folder_as_out_is_refused(capfd, hostile, tmp_path):
    """Writing the outputs into the DICOM folder being read would modify the input."""
    folder = tmp_path / "dicom"
    shutil.copytree(REPO / "Testing" / "Data" / "example_ct_dicom", folder)
    before = sorted(p.name for p in folder.iterdir())
    _refused(capfd, hostile, folder, out=folder, keywords=("is the input",))
    assert sorted(p.name for p in folder.iterdir()) == before


def test_demo_and_training_check_their_out_before_any_work(capfd, hostile):
    ae = hostile["ae"]
    before = _sha(ae)
    code, _, err = _run(capfd, "train-classifier", "--out", ae, "--autoencoder", ae, "--train", "2", "--eval", "2")
    assert "is the input" in _one_error_line(code, err)
    assert _sha(ae) == before
    code, _, err = _run(capfd, "demo", "--out", hostile["a_file"] / "demo")
    assert "is below" in _one_error_line(code, err)


# ------------------------------------------------------------------------------------------- damaged files


@pytest.mark.parametrize("name", ["half.nii", "half.nii.gz"])
def test_truncated_nifti_is_refused(capfd, hostile, name):
    _refused(capfd, hostile, hostile[name], keywords=("truncated", name))


@pytest.mark.parametrize("name", ["half.mha", "scrambled.nii.gz"])
def test_other_damaged_images_are_refused(capfd, hostile, name):
    _refused(capfd, hostile, hostile[name], keywords=(name,))


def test_intact_nifti_passes_the_completeness_check(hostile):
    from CTCounterfactualLib.data.file_checks import check_complete

    check_complete(hostile["whole.nii.gz"])
    plain = hostile["root"] / "plain.nii"
    plain.write_bytes(gzip.decompress(hostile["whole.nii.gz"].read_bytes()))
    check_complete(plain)
    assert read_volume(plain).array.shape == read_volume(hostile["ct"]).array.shape


def test_folder_without_dicom_gives_one_line_and_no_itk_warning(capfd, hostile):
    _refused(capfd, hostile, hostile["no_dicom"], keywords=("no dicom series",))


def _subprocess(argv: list) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "CTCounterfactualLib.cli", *[str(a) for a in argv]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO, env=ONE_THREAD_ENV)


def test_named_pipes_are_refused_without_blocking(hostile, tmp_path):
    """A pipe as the input file, or inside a DICOM folder, is refused without opening it (it would block)."""
    fifo = tmp_path / "scan.nrrd"
    os.mkfifo(fifo)
    folder = tmp_path / "dicom"
    shutil.copytree(REPO / "Testing" / "Data" / "example_ct_dicom", folder)
    os.mkfifo(folder / "zz_pipe.dcm")
    for source in (fifo, folder):
        proc = _subprocess(_explain(hostile, source, tmp_path / "out"))
        line = _one_error_line(proc.returncode, proc.stderr)
        assert "named pipe" in line
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------- non-finite numbers


@pytest.mark.parametrize(
    "option,value", [("--step-size", "nan"), ("--max-steps", "inf"), ("--pred-diff", "nan"), ("--pred-floor", "-inf")]
)
def test_non_finite_search_parameters_are_refused(capfd, hostile, option, value):
    _refused(capfd, hostile, hostile["ct"], f"{option}={value}", keywords=(option, "finite"))


def test_classifier_returning_nan_stops_the_run(capfd, hostile):
    _refused(capfd, hostile, hostile["ct"], clf=hostile["clf_nan"], keywords=("non-finite", "nan"))


def test_decoder_producing_nan_stops_the_run(capfd, hostile):
    _refused(capfd, hostile, hostile["ct"], ae=hostile["ae_nan_decoder"], keywords=("reconstruction", "non-finite"))


# ------------------------------------------------------------------------------------------- models that do not fit


@pytest.mark.parametrize(
    "model,keywords",
    [
        ("ae_text", ("not a pytorch weights file",)),
        ("ae_arch_unknown", ("unknown architecture field", "depth")),
        ("ae_arch_typed", ("architecture field 'ch'",)),
        ("ae_list_sidecar", ("sidecar", "json object")),
        ("ae_no_convention", ("without its input convention", "--autoencoder-convention")),
    ],
)
def test_bad_autoencoder_files_give_one_line(capfd, hostile, model, keywords):
    _refused(capfd, hostile, hostile["ct"], ae=hostile[model], keywords=keywords)


@pytest.mark.parametrize(
    "model,keywords",
    [
        ("clf_flat", ("failed on an input of shape", "mat1 and mat2")),
        ("clf_detached", ("no gradient",)),
        ("clf_window_wide", ("'window'", "wide")),
        ("clf_threshold_high", ("'threshold'", "high")),
        ("clf_sigmoid_yes", ("'apply_sigmoid'",)),
    ],
)
def test_bad_classifier_files_give_one_line(capfd, hostile, model, keywords):
    _refused(capfd, hostile, hostile["ct"], clf=hostile[model], keywords=keywords)


def test_broken_yaml_config_is_one_line(capfd, hostile):
    _refused(capfd, hostile, hostile["ct"], "--autoencoder-config", hostile["broken_yaml"], keywords=("taming config",))


def test_convention_given_on_the_command_line_is_used(capfd, hostile, tmp_path):
    """The checkpoint without a convention runs once it is given (a JSON file here; catalog names resolve too)."""
    from CTCounterfactualLib.models.autoencoder import PUBLISHED_CT_CONVENTION
    from CTCounterfactualLib.store.open_models import named_convention

    out = tmp_path / "out"
    extra = ("--autoencoder-convention", hostile["convention_file"])
    code, _, err = _run(capfd, *_explain(hostile, hostile["ct"], out, *extra, ae=hostile["ae_no_convention"]))
    assert code == 0, err
    assert (out / SUMMARY_JSON).is_file()
    assert named_convention("ct-vqgan") == PUBLISHED_CT_CONVENTION
    code, _, err = _run(capfd, *_explain(hostile, hostile["ct"], out, "--autoencoder-convention", "nonsense"))
    assert "neither a json file nor a catalog autoencoder" in _one_error_line(code, err)


# ------------------------------------------------------------------------------------------- plausibility


def test_input_the_autoencoder_would_see_as_blank_is_refused(capfd, hostile):
    _refused(capfd, hostile, hostile["bright"], keywords=("window", "blank"))


def test_implausible_input_warns_on_the_cli_and_in_the_summary(capfd, hostile, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = _run(capfd, *_explain(hostile, hostile["uint8"], out))
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("ctcf: warning: ")]
    summary = json.loads((out / SUMMARY_JSON).read_text(encoding="utf-8"))
    assert [w.removeprefix("ctcf: warning: ") for w in warnings] == summary["warnings"]
    assert any("uint8" in w for w in summary["warnings"])
    assert any("darkest" in w for w in summary["warnings"])
    assert "Traceback" not in err


def test_counterfactual_that_does_not_lower_the_prediction_is_flagged(capfd, hostile, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = _run(capfd, *_explain(hostile, hostile["ct"], out, clf=hostile["clf_constant"]))
    assert code == 0, err
    summary = json.loads((out / SUMMARY_JSON).read_text(encoding="utf-8"))
    assert [flag["code"] for flag in summary["flags"]] == ["cf_not_lower"]
    assert "FLAGGED, not an explanation" in stdout and "[cf_not_lower]" in stdout


def test_a_normal_run_has_no_warnings_and_no_flags(capfd, hostile, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = _run(capfd, *_explain(hostile, hostile["ct"], out))
    assert code == 0, err
    summary = json.loads((out / SUMMARY_JSON).read_text(encoding="utf-8"))
    # the input is plausible CT: no input warning; the tiny random autoencoder may still get its fidelity
    # warning (a check of the model, not of the input), printed once like every warning
    input_warnings = [w for w in summary["warnings"] if not w.startswith("the autoencoder reconstructs")]
    assert input_warnings == []
    assert err.count("ctcf: warning") == len(summary["warnings"])
    flagged = bool(summary["flags"])
    assert ("FLAGGED" in stdout) == flagged


# ------------------------------------------------------------------------------------------- ctcf models


def test_models_download_into_unusable_cache_fails_first(capfd, hostile):
    code, _, err = _run(capfd, "models", "download", "ct-vqgan", "--cache-dir", hostile["a_file"] / "cache")
    assert "is below" in _one_error_line(code, err)
    target = "/sys/ctcf-cache" if os.geteuid() == 0 else None
    if target is None:
        locked = hostile["root"] / "locked_cache"
        locked.mkdir()
        locked.chmod(0o555)
        target = locked / "cache"
    code, _, err = _run(capfd, "models", "download", "ct-vqgan", "--cache-dir", target)
    assert "cannot write to the model cache" in _one_error_line(code, err)


@pytest.mark.parametrize(
    "content",
    [
        '{"ct-vqgan/x.ckpt": "abc"}',
        "[1, 2]",
        '{"ct-vqgan/x.ckpt": {"sha256": 5}}',
        '{"a/b": {"sha256": "%s", "bytes": "many"}}' % ("0" * 64),
    ],
)
def test_models_verify_with_unexpected_hashes_json(capfd, tmp_path, content):
    from CTCounterfactualLib.store.catalog import get_entry

    entry = get_entry("ct-vqgan")
    for mf in entry.files:  # the published files placed by hand, so that verify reads the record
        (tmp_path / entry.name).mkdir(exist_ok=True)
        (tmp_path / entry.name / mf.name).write_text("placed by hand\n", encoding="utf-8")
    (tmp_path / "hashes.json").write_text(content, encoding="utf-8")
    code, _, err = _run(capfd, "models", "verify", "ct-vqgan", "--cache-dir", tmp_path)
    assert "unexpected content" in _one_error_line(code, err)


# ------------------------------------------------------------------------------------------- the checks themselves


def _volume(array: np.ndarray, spacing=(1.0, 1.0, 1.0), pixel_type="int16"):
    from CTCounterfactualLib.data.volume_io import Volume

    geo = Geometry(tuple(array.shape[::-1]), spacing, (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    return Volume(array.astype(np.float32), geo, "", pixel_type)


def _ct_like(shape=(16, 64, 64)) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(-1000, 1500, size=shape)


@pytest.mark.parametrize(
    "case,expect",
    [
        ("ct", ()),
        ("int8", ("int8", "darkest")),
        ("mr_like", ("darkest", "brightest")),
        ("squashed", ("stretching the anatomy 3.12x",)),
        ("single_slice", ("1 slice",)),
        ("anisotropic", ("anisotropic",)),
    ],
)
def test_plausibility_warnings(case, expect):
    from CTCounterfactualLib.jobs.checks import volume_warnings

    volumes = {
        "ct": _volume(_ct_like()),
        "int8": _volume(np.clip(_ct_like(), -128, 127), pixel_type="int8"),
        "mr_like": _volume(np.random.default_rng(1).uniform(0, 4000, (16, 64, 64)), pixel_type="uint16"),
        "squashed": _volume(_ct_like((16, 64, 200))),
        "single_slice": _volume(_ct_like((1, 64, 64))),
        "anisotropic": _volume(_ct_like(), spacing=(0.5, 0.5, 5.0)),
    }
    warnings = volume_warnings(volumes[case], {"autoencoder": 64, "classifier": None})
    assert len(warnings) == len(expect), warnings
    for text, warning in zip(expect, warnings, strict=True):
        assert text in warning


def test_reconstruction_far_from_the_input_is_flagged():
    from CTCounterfactualLib.jobs.checks import RECON_GAP, result_flags

    near = {"input": 0.50, "reconstruction": 0.50 + RECON_GAP / 2, "counterfactual": 0.1}
    far = {"input": 0.13, "reconstruction": 0.86, "counterfactual": 0.1}
    assert result_flags(near, 0.6, 0.1) == []
    assert [flag["code"] for flag in result_flags(far, 0.86, 0.1)] == ["reconstruction_far"]
    assert [flag["code"] for flag in result_flags(far, 0.38, 0.91)] == ["cf_not_lower", "reconstruction_far"]
