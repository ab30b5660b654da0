"""End-to-end tests of the ``ctcf`` command line on real CT files with real (tiny) torch models."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from cli_runner import run_main
from one_thread import ONE_THREAD_ENV

import CTCounterfactualLib
from CTCounterfactualLib.data.volume_io import read_volume
from CTCounterfactualLib.progress import parse_progress_line
from CTCounterfactualLib.protocol import CHUNK_COLUMNS, OUTPUT_FILES

REPO = Path(__file__).resolve().parents[2]
DICOM_DIR = REPO / "Testing" / "Data" / "example_ct_dicom"
VOLUME_OUTPUTS = ("counterfactual.nrrd", "reconstruction.nrrd", "heatmap.nrrd", "difference.nrrd")


pytestmark = pytest.mark.usefixtures("torch_on_one_thread")


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _explain_argv(input_path, out, models, *extra) -> list[str]:
    ae, clf = models
    return ["explain", str(input_path), "--out", str(out), "--autoencoder", str(ae), "--classifier", str(clf), *extra]


def _ctcf_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "CTCounterfactualLib.cli", *[str(a) for a in args]]


def _run_ctcf(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        _ctcf_cmd(*args), capture_output=True, text=True, timeout=timeout, cwd=REPO, env=ONE_THREAD_ENV
    )


def _assert_same_geometry(path: Path, expected) -> None:
    got = read_volume(path).geometry
    assert got.size == expected.size, path.name
    np.testing.assert_allclose(got.spacing, expected.spacing, rtol=0, atol=1e-5, err_msg=path.name)
    np.testing.assert_allclose(got.origin, expected.origin, rtol=0, atol=1e-4, err_msg=path.name)
    np.testing.assert_allclose(got.direction, expected.direction, rtol=0, atol=1e-6, err_msg=path.name)


def _array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


# ---------------------------------------------------------------------------------------------
# scan mode: one full run, many checks
# ---------------------------------------------------------------------------------------------

SCAN_SLICES = (3, 20)  # 17 slices: chunks of 4 with a shorter last one
SCAN_CHUNK = 4
QUICK_SEARCH = ("--max-steps", "200", "--lambda-sweep-steps", "3")  # ~13 lambda steps, 3 sweep frames


@pytest.fixture(scope="module")
def scan_run(tmp_path_factory, small_ct, tiny_model_files):
    run_dir = tmp_path_factory.mktemp("scan_run")
    out = run_dir / "result"
    sha_before = _sha256(small_ct)
    rc = run_main(
        _explain_argv(
            small_ct,
            out,
            tiny_model_files,
            "--target",
            "effusion",
            "--slices",
            f"{SCAN_SLICES[0]}:{SCAN_SLICES[1]}",
            "--chunk-size",
            str(SCAN_CHUNK),
            "--progress",
            "none",
            *QUICK_SEARCH,
        )
    )
    return {"rc": rc, "out": out, "run_dir": run_dir, "sha_before": sha_before}


def test_scan_exit_code_and_exact_files(scan_run, small_ct):
    assert scan_run["rc"] == 0
    out = scan_run["out"]
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    assert sorted(OUTPUT_FILES) == sorted(
        [
            "counterfactual.nrrd",
            "reconstruction.nrrd",
            "heatmap.nrrd",
            "difference.nrrd",
            "chunks.csv",
            "predictions.png",
            "summary.json",
        ]
    )
    # nothing beside the output folder: no staging (.result.partial-*) folders, no temp files
    assert [p.name for p in scan_run["run_dir"].iterdir()] == ["result"]
    assert (out / "predictions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the input was only read
    assert _sha256(small_ct) == scan_run["sha_before"]


def test_scan_volumes_keep_input_geometry(scan_run, small_ct):
    expected = read_volume(small_ct).geometry
    for name in VOLUME_OUTPUTS:
        _assert_same_geometry(scan_run["out"] / name, expected)
        # written without gzip (COMPRESS_VOLUMES): float CT gains little from it at 5x the write time
        header = (scan_run["out"] / name).read_bytes()[:1000].split(b"\n\n")[0]
        assert b"encoding: raw" in header


def _reference(out: Path, summary: dict, input_path: Path) -> np.ndarray:
    """What the CF is compared with: the input (detail CF) or the reconstruction (decoded CF)."""
    assert (
        summary["difference"]
        == f"counterfactual - {'input' if summary['counterfactual'] == 'detail' else 'reconstruction'}"
    )
    return _array(input_path if summary["counterfactual"] == "detail" else out / "reconstruction.nrrd")


def test_scan_heatmap_and_difference(scan_run, small_ct):
    out = scan_run["out"]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    a, b = summary["output_chunk"]["start"], summary["output_chunk"]["end"]
    s0, s1 = SCAN_SLICES

    heat_img = sitk.ReadImage(str(out / "heatmap.nrrd"))
    assert heat_img.GetPixelID() == sitk.sitkFloat32
    heat = sitk.GetArrayFromImage(heat_img)
    assert np.isfinite(heat).all()
    assert heat.min() >= 0
    assert np.all(heat[:s0] == 0) and np.all(heat[s1:] == 0)  # only the range's chunks have a heatmap

    diff_img = sitk.ReadImage(str(out / "difference.nrrd"))
    assert diff_img.GetPixelID() == sitk.sitkFloat32
    diff = sitk.GetArrayFromImage(diff_img)
    cf = _array(out / "counterfactual.nrrd").astype(np.float64)
    ref = _reference(out, summary, small_ct).astype(np.float64)
    np.testing.assert_allclose(diff, cf - ref, rtol=0, atol=1e-2)
    assert s0 <= a < b <= s1
    assert np.all(diff[:a] == 0) and np.all(diff[b:] == 0)
    assert np.array_equal(cf[:a], ref[:a]) and np.array_equal(cf[b:], ref[b:])
    if summary["output_chunk"]["lambda"] != 0:
        assert np.abs(diff[a:b]).max() > 0  # a shifted latent decodes to different slices


def test_scan_chunks_csv(scan_run):
    out = scan_run["out"]
    header, rows = _read_csv(out / "chunks.csv")
    assert header == list(CHUNK_COLUMNS)
    assert header[:5] == ["chunk_start", "chunk_end", "prediction_before", "prediction_min", "lambda"]
    s0, s1 = SCAN_SLICES
    starts = list(range(s0, s1, SCAN_CHUNK))
    assert [int(r["chunk_start"]) for r in rows] == starts
    assert [int(r["chunk_end"]) for r in rows] == [min(s + SCAN_CHUNK, s1) for s in starts]
    for r in rows:
        assert 0.0 <= float(r["prediction_min"]) <= float(r["prediction_before"]) <= 1.0
        assert float(r["lambda"]) <= 0
        assert r["stop_reason"]


def test_scan_cf_is_chunk_with_lowest_prediction(scan_run):
    out = scan_run["out"]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    _, rows = _read_csv(out / "chunks.csv")
    lowest = min(rows, key=lambda r: float(r["prediction_min"]))
    assert summary["output_chunk"]["start"] == int(lowest["chunk_start"])
    assert summary["output_chunk"]["end"] == int(lowest["chunk_end"])
    assert float(summary["output_chunk"]["lambda"]) == pytest.approx(float(lowest["lambda"]))
    assert summary["predictions"]["counterfactual"] == pytest.approx(float(lowest["prediction_cf"]), rel=1e-6)


def test_scan_summary(scan_run, small_ct, tiny_model_files):
    out = scan_run["out"]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    ae, clf = tiny_model_files

    geometry = read_volume(small_ct).geometry
    assert summary["input"]["geometry"]["size"] == list(geometry.size)
    np.testing.assert_allclose(summary["input"]["geometry"]["spacing"], geometry.spacing, atol=1e-6)
    np.testing.assert_allclose(summary["input"]["geometry"]["origin"], geometry.origin, atol=1e-5)
    np.testing.assert_allclose(summary["input"]["geometry"]["direction"], geometry.direction, atol=1e-6)

    assert summary["models"]["autoencoder"]["sha256"] == hashlib.sha256(ae.read_bytes()).hexdigest()
    assert summary["models"]["classifier"]["sha256"] == hashlib.sha256(clf.read_bytes()).hexdigest()

    assert summary["target"]["name"] == "effusion"
    assert summary["target"]["index"] == 0
    for key in ("input", "reconstruction", "counterfactual"):
        assert 0.0 <= summary["predictions"][key] <= 1.0
    assert summary["mode"] == "scan"
    assert summary["slices"] == list(SCAN_SLICES)
    assert summary["chunk_size"] == SCAN_CHUNK
    _, rows = _read_csv(out / "chunks.csv")
    assert len(summary["lambdas"]) == len(rows)
    assert summary["lambdas"] == pytest.approx([float(r["lambda"]) for r in rows])
    assert {"encode", "decode", "gradient", "search"} <= set(summary["timings_s"])
    assert all(v >= 0 for v in summary["timings_s"].values())
    assert summary["peak_memory_mb"] > 0
    assert summary["ctcf_version"] == CTCounterfactualLib.__version__


# ---------------------------------------------------------------------------------------------
# joint mode, DICOM input
# ---------------------------------------------------------------------------------------------


def test_joint_mode_one_chunk_changes_only_the_range(tmp_path, small_ct, tiny_model_files):
    out = tmp_path / "joint"
    argv = _explain_argv(small_ct, out, tiny_model_files, "--target", "lung size", "--mode", "joint")
    assert run_main([*argv, "--slices", "6:14", "--progress", "none", *QUICK_SEARCH]) == 0
    _, rows = _read_csv(out / "chunks.csv")
    assert [(int(r["chunk_start"]), int(r["chunk_end"])) for r in rows] == [(6, 14)]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["mode"] == "joint"
    assert summary["target"] == {"name": "lung size", "index": 1}
    assert (summary["output_chunk"]["start"], summary["output_chunk"]["end"]) == (6, 14)
    assert len(summary["lambdas"]) == 1
    cf = _array(out / "counterfactual.nrrd")
    ref = _reference(out, summary, small_ct)
    assert np.array_equal(cf[:6], ref[:6]) and np.array_equal(cf[14:], ref[14:])
    assert summary["output_chunk"]["lambda"] < 0
    assert not np.array_equal(cf[6:14], ref[6:14])
    heat = _array(out / "heatmap.nrrd")
    assert np.all(heat[:6] == 0) and np.all(heat[14:] == 0)


def test_dicom_folder_input_keeps_dicom_geometry(tmp_path, tiny_model_files):
    out = tmp_path / "dicom_out"
    argv = _explain_argv(DICOM_DIR, out, tiny_model_files, "--target", "0", "--slices", "8:16", "--chunk-size", "4")
    assert run_main([*argv, "--max-steps", "50", "--lambda-sweep-steps", "2", "--progress", "none"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    expected = read_volume(DICOM_DIR).geometry
    assert expected.size == (512, 512, 20)
    for name in VOLUME_OUTPUTS:
        _assert_same_geometry(out / name, expected)
    _, rows = _read_csv(out / "chunks.csv")
    assert [(int(r["chunk_start"]), int(r["chunk_end"])) for r in rows] == [(8, 12), (12, 16)]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["input"]["geometry"]["size"] == [512, 512, 20]


# ---------------------------------------------------------------------------------------------
# progress protocol
# ---------------------------------------------------------------------------------------------


def test_progress_json_lines(tmp_path, small_ct, tiny_model_files):
    out = tmp_path / "json_out"
    argv = _explain_argv(
        small_ct, out, tiny_model_files, "--target", "effusion", "--slices", "0:8", "--chunk-size", "4"
    )
    proc = _run_ctcf(*argv, *QUICK_SEARCH, "--progress", "json")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert lines
    events = []
    for line in lines:
        obj = json.loads(line)  # every stdout line is a JSON object
        assert parse_progress_line(line) == obj
        assert {"stage", "done", "total", "message"} <= obj.keys()
        assert isinstance(obj["done"], int) and isinstance(obj["total"], int)
        assert isinstance(obj["message"], str)
        events.append(obj)
    stages = {e["stage"] for e in events}
    assert {"encode", "gradient", "search", "write"} <= stages
    assert events[-1]["stage"] == "done"
    assert Path(events[-1]["out"]) == out
    assert set(events[-1]["predictions"]) >= {"input", "reconstruction", "counterfactual"}
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)


@pytest.mark.parametrize(
    "line",
    [
        '{"stage": "search", "done": 3, "total": 10, "message": "lambda search on slices 30-39"}',
        '{"stage": "done", "done": 1, "total": 1, "message": "finished", "out": "/x"}\n',
    ],
)
def test_parse_progress_line_good(line):
    obj = parse_progress_line(line)
    assert obj is not None
    assert obj == json.loads(line)
    assert obj["stage"] in ("search", "done")


@pytest.mark.parametrize(
    "line",
    [
        "",
        "not json at all",
        "load:  33%|###       | 1/3",
        "[1, 2, 3]",
        '"stage"',
        '{"stage": "search", "done": 3, "total": 10}',  # no message
        '{"done": 1, "total": 1, "message": "x"}',  # no stage
        '{"stage": "search", "done": 3, ',  # truncated
        None,
    ],
)
def test_parse_progress_line_bad(line):
    assert parse_progress_line(line) is None


# ---------------------------------------------------------------------------------------------
# interruption: SIGTERM / Ctrl-C leave no outputs
# ---------------------------------------------------------------------------------------------


def _default_sigint() -> None:
    # A child of a shell that ignores SIGINT would inherit SIG_IGN, and Python would then not
    # install its KeyboardInterrupt handler; give the child the default disposition explicitly.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_during_search(long_ct: Path, out: Path, models, sig: int) -> subprocess.CompletedProcess:
    argv = _explain_argv(long_ct, out, models, "--target", "effusion", "--chunk-size", "1", "--progress", "json")
    proc = subprocess.Popen(
        _ctcf_cmd(*argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=ONE_THREAD_ENV,
        preexec_fn=_default_sigint,
    )
    seen: list[str] = []
    try:
        for line in proc.stdout:
            seen.append(line)
            event = parse_progress_line(line)
            if event is not None and event["stage"] == "search":
                proc.send_signal(sig)
                break
        else:
            pytest.fail(f"the run ended before its search stage: {''.join(seen)}{proc.stderr.read()}")
        stdout_rest, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(seen) + stdout_rest, stderr)


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".partial-" in p.name or p.name.startswith(".tmp-")]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_interrupt_leaves_no_output(tmp_path, long_ct, tiny_model_files, sig):
    out = tmp_path / "never"
    result = _interrupt_during_search(long_ct, out, tiny_model_files, sig)
    assert result.returncode != 0
    assert "interrupted" in result.stderr.lower()
    assert "Traceback" not in result.stderr
    assert not out.exists() or not any(out.iterdir())
    assert _leftovers(tmp_path) == []
    last = parse_progress_line(result.stdout.splitlines()[-1])
    assert last is not None and last["stage"] != "done"


def test_interrupt_keeps_existing_folder_as_it_was(tmp_path, long_ct, tiny_model_files):
    out = tmp_path / "previous"
    out.mkdir()
    old = out / "summary.json"
    old.write_text('{"old": true}\n', encoding="utf-8")
    os.utime(old, (1_000_000_000, 1_000_000_000))
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}
    result = _interrupt_during_search(long_ct, out, tiny_model_files, signal.SIGTERM)
    assert result.returncode != 0
    assert "interrupted" in result.stderr.lower()
    assert "Traceback" not in result.stderr
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}
    assert after == before
    assert _leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# help text, demo
# ---------------------------------------------------------------------------------------------


def test_explain_help_says_scan_cf_is_lowest_prediction_chunk(capsys):
    with pytest.raises(SystemExit) as exc:
        run_main(["explain", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split()).lower()
    assert "counterfactual.nrrd is the cf of the chunk with the lowest prediction" in text
    for name in OUTPUT_FILES:
        assert name in text


def test_a_prefix_of_an_option_is_not_taken_for_it(capsys, tmp_path):
    """``--output`` (meaning ``--out``) is a prefix of ``--output-map``: argparse's default would take it for
    that option and complain about an invalid choice; ctcf says --out is missing instead."""
    args = ["explain", "ct.nrrd", "--output", str(tmp_path / "x"), "--autoencoder", "a", "--classifier", "b"]
    with pytest.raises(SystemExit) as exc:
        run_main([*args, "--target", "t"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("ctcf: error:") and "--out" in err and "--output-map" not in err


def test_demo_command_runs_the_bundled_demo(wheel_demo):
    """``ctcf demo`` as a user runs it: the installed console script (the run test_wheel.py checks as well)."""
    proc, tmp_path = wheel_demo
    out = tmp_path / "demo"
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("scan :") for line in lines) and any(line.startswith("joint:") for line in lines)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["input.nrrd", "labels.nrrd", "scan", "joint", "report.png", "demo.json"]
    )
    for mode in ("scan", "joint"):
        assert sorted(p.name for p in (out / mode).iterdir()) == sorted(OUTPUT_FILES)
        summary = json.loads((out / mode / "summary.json").read_text(encoding="utf-8"))
        assert summary["target"]["name"] == "pleural effusion" and summary["mode"] == mode
        expected = read_volume(out / "input.nrrd").geometry
        for name in VOLUME_OUTPUTS:
            _assert_same_geometry(out / mode / name, expected)
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]
