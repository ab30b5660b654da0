"""``ctcf batch``: a 6-volume manifest (phantoms, real CT crops, one bad file) on the local pool and on Ray."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import run_main
from conftest import _crop_ct

from CTCounterfactualLib.cli import build_parser
from CTCounterfactualLib.cli.explain import explain_config
from CTCounterfactualLib.data.phantom import LABELS, PhantomSpec, make_phantom
from CTCounterfactualLib.data.volume_io import read_volume, write_volume
from CTCounterfactualLib.jobs.batch import run_batch
from CTCounterfactualLib.jobs.batch_worker import ModelSpec
from CTCounterfactualLib.jobs.executors import ExecutorSpec
from CTCounterfactualLib.jobs.manifest import read_manifest
from CTCounterfactualLib.jobs.outputs import read_chunks_csv
from CTCounterfactualLib.protocol import (
    BATCH_RESULTS_CSV,
    BATCH_SETTINGS_JSON,
    OUTPUT_FILES,
    RESULTS_COLUMNS,
    TIMING_COLUMNS,
)

ray = pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[2]
# bundled models; 8-slice volumes, chunks of 4 and a short lambda search keep a volume to a few seconds
MODELS = ["--autoencoder", "demo-vqgan", "--classifier", "demo-effusion"]
OPTIONS = ["--target", "0", "--chunk-size", "4", "--step-size", "10", "--max-steps", "30"]
OPTIONS += ["--lambda-sweep-steps", "3", "--device", "cpu", "--progress", "none"]
IDS = ["ph_right", "ph_left", "ph_none", "ct_chest", "ct_abdomen", "broken"]


def _phantom(folder: Path, name: str, seed: int, effusion: str) -> Path:
    ph = make_phantom(PhantomSpec(seed=seed, slices=8, size=64, effusion=effusion))
    write_volume(ph.hu, ph.geometry, folder / f"{name}.nrrd")
    if effusion != "none":
        mask = (ph.labels == LABELS["effusion"]).astype(np.uint8)
        write_volume(mask, ph.geometry, folder / f"{name}_mask.nrrd")
    return folder / f"{name}.nrrd"


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """6 volumes: 3 phantoms (2 with masks), 2 crops of the bundled real CT (one with its own slices and target),
    and a text file named .nrrd."""
    d = tmp_path_factory.mktemp("cohort")
    _phantom(d, "right", 101, "right")
    _phantom(d, "left", 102, "left")
    _phantom(d, "none", 103, "none")
    _crop_ct(d / "chest.nrrd", (96, 104), (20, 84), (30, 94))
    _crop_ct(d / "abdomen.nrrd", (40, 50), (20, 84), (30, 94))
    (d / "broken.nrrd").write_text("not an image\n", encoding="utf-8")
    rows = [
        ["path", "id", "label", "mask", "slices", "target"],
        ["right.nrrd", "ph_right", "1", "right_mask.nrrd", "", ""],
        ["left.nrrd", "ph_left", "1", "left_mask.nrrd", "", ""],
        ["none.nrrd", "ph_none", "0", "", "", ""],
        ["chest.nrrd", "ct_chest", "0", "", "", ""],
        ["abdomen.nrrd", "ct_abdomen", "0", "", "2:10", "pleural effusion"],
        ["broken.nrrd", "broken", "0", "", "", ""],
    ]
    with open(d / "manifest.csv", "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    return d / "manifest.csv"


def _results(out: Path) -> list[dict]:
    with open(out / BATCH_RESULTS_CSV, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _batch(manifest: Path, out: Path, *extra) -> int:
    return run_main(["batch", manifest, "--out", out, *MODELS, *OPTIONS, *extra])


@pytest.fixture(scope="module")
def local_run(manifest, tmp_path_factory) -> tuple[Path, int]:
    out = tmp_path_factory.mktemp("local") / "out"
    return out, _batch(manifest, out, "--executor", "local", "--workers", "2")


@pytest.fixture(scope="module")
def ray_run(manifest, tmp_path_factory, ray_session) -> tuple[Path, int]:
    out = tmp_path_factory.mktemp("ray") / "out"
    return out, _batch(manifest, out, "--executor", "ray", "--workers", "2")


def _mtimes(out: Path, ids) -> dict:
    return {i: (out / i / "summary.json").stat().st_mtime_ns for i in ids}


def test_each_volume_gets_explains_outputs_and_one_row_and_the_bad_one_fails_alone(local_run, manifest):
    out, rc = local_run
    assert rc == 1  # some volume failed; the others finished
    rows = _results(out)
    assert [r["id"] for r in rows] == IDS  # manifest order, whatever order they finished in
    assert list(rows[0]) == list(RESULTS_COLUMNS)
    by_id = {r["id"]: r for r in rows}
    bad = by_id.pop("broken")
    assert bad["status"] == "failed" and bad["error"].startswith("cannot read") and "\n" not in bad["error"]
    assert not (out / "broken").exists()
    for i, r in by_id.items():
        assert r["status"] == "ok" and r["error"] == ""
        assert sorted(p.name for p in (out / i).iterdir()) == sorted(OUTPUT_FILES)
        summary = json.loads((out / i / "summary.json").read_text(encoding="utf-8"))
        assert float(r["prediction_counterfactual"]) == pytest.approx(summary["predictions"]["counterfactual"])
        assert float(r["lambda"]) == summary["output_chunk"]["lambda"]
        assert (int(r["chunk_start"]), int(r["chunk_end"])) == (
            summary["output_chunk"]["start"],
            summary["output_chunk"]["end"],
        )
        assert float(r["seconds"]) > 0 and float(r["peak_memory_mb"]) > 0
        assert float(r["prediction_counterfactual_min"]) <= float(r["prediction_reconstruction"])
    # the row's own slices and target
    abdomen = json.loads((out / "ct_abdomen" / "summary.json").read_text(encoding="utf-8"))
    assert abdomen["slices"] == [2, 10] and by_id["ct_abdomen"]["target"] == "pleural effusion"
    assert json.loads((out / "ct_chest" / "summary.json").read_text(encoding="utf-8"))["slices"] == [0, 8]
    # masks give the heatmap's share inside them, measured from the written heatmap
    for i in ("ph_right", "ph_left"):
        heat = read_volume(out / i / "heatmap.nrrd").array
        mask = read_volume(manifest.parent / f"{i[3:]}_mask.nrrd").array > 0
        share = float(by_id[i]["heatmap_share_in_mask"])
        assert share == pytest.approx(heat[mask].sum() / heat.sum(), rel=1e-5)
        assert share <= float(by_id[i]["heatmap_share_near_mask"]) <= 1
    assert by_id["ph_none"]["heatmap_share_in_mask"] == ""


def test_local_and_ray_give_the_same_results(local_run, ray_run):
    (a, rc_a), (b, rc_b) = local_run, ray_run
    assert rc_a == rc_b == 1
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]  # noqa: E731
    assert strip(_results(a)) == strip(_results(b))
    for i in IDS[:-1]:
        assert (a / i / "chunks.csv").read_text(encoding="utf-8") == (b / i / "chunks.csv").read_text(encoding="utf-8")
        np.testing.assert_array_equal(
            read_volume(a / i / "counterfactual.nrrd").array, read_volume(b / i / "counterfactual.nrrd").array
        )


def test_batch_outputs_equal_ctcf_explain(local_run, manifest, tmp_path):
    out, _ = local_run
    single = tmp_path / "single"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a batch worker with --cpus-per-worker 1
    try:
        assert run_main(["explain", manifest.parent / "chest.nrrd", "--out", single, *MODELS, *OPTIONS]) == 0
    finally:
        torch.set_num_threads(threads)
    for name in ("counterfactual.nrrd", "reconstruction.nrrd", "heatmap.nrrd", "difference.nrrd"):
        a, b = read_volume(out / "ct_chest" / name), read_volume(single / name)
        np.testing.assert_array_equal(a.array, b.array)
        assert a.geometry == b.geometry
    assert read_chunks_csv(out / "ct_chest" / "chunks.csv") == read_chunks_csv(single / "chunks.csv")
    s_batch = json.loads((out / "ct_chest" / "summary.json").read_text(encoding="utf-8"))
    s_single = json.loads((single / "summary.json").read_text(encoding="utf-8"))
    differ = {"timings_s", "peak_memory_mb", "memory"}
    assert {k: v for k, v in s_batch.items() if k not in differ} == {
        k: v for k, v in s_single.items() if k not in differ
    }


def test_rerun_skips_finished_volumes_and_retry_failed_runs_the_failed_again(local_run, manifest, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(local_run[0], out)
    before = _results(out)
    stamps = _mtimes(out, IDS[:-1])
    assert _batch(manifest, out, "--progress", "json") == 1  # nothing ran; 'broken' still stands failed
    assert _results(out) == before and _mtimes(out, IDS[:-1]) == stamps
    assert _batch(manifest, out, "--retry-failed") == 1
    after = _results(out)
    assert after[:-1] == before[:-1] and _mtimes(out, IDS[:-1]) == stamps  # the finished ones untouched
    assert after[-1]["status"] == "failed" and after[-1]["seconds"] != ""


def test_rerun_with_other_options_is_refused(local_run, manifest, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(local_run[0], out)
    before = (out / BATCH_RESULTS_CSV).read_text(encoding="utf-8")
    argv = ["batch", manifest, "--out", out, *MODELS, *OPTIONS[:2], "--chunk-size", "2", *OPTIONS[4:]]
    assert run_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ctcf: error:") and "chunk_size 4 there, 2 now" in err and "\n" not in err
    assert (out / BATCH_RESULTS_CSV).read_text(encoding="utf-8") == before


@pytest.mark.parametrize(
    "content, message",
    [
        ("file,label\na.nrrd,1\n", "needs a header line with a 'path' column"),
        ("path,id\na.nrrd,x\nb.nrrd,x\n", "id 'x' is also on line 2"),
        ("path,slices\na.nrrd,3-9\n", "slices '3-9' is not A:B"),
        ("path,labl\na.nrrd,1\n", "unknown column(s) labl"),
        ("path,id\na.nrrd,../up\n", "cannot name a folder"),
    ],
)
def test_a_malformed_manifest_stops_before_any_work(tmp_path, capsys, content, message):
    m = tmp_path / "m.csv"
    m.write_text(content, encoding="utf-8")
    assert _batch(m, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ctcf: error: manifest") and message in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_a_killed_run_resumes_without_recomputing_the_finished_volumes(manifest, tmp_path):
    """SIGKILL (a crash, not a clean Ctrl-C) once the first volume is in results.csv; the rerun does the rest."""
    lines = manifest.read_text(encoding="utf-8").splitlines()
    m = manifest.parent / "three.csv"  # beside the volumes: the manifest's paths are relative to it
    m.write_text("\n".join(lines[:4]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    argv = ["batch", m, "--out", out, *MODELS, *OPTIONS[:-1], "json", "--workers", "1"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "CTCounterfactualLib.cli", *map(str, argv)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        for line in proc.stdout:
            event = json.loads(line)
            if event.get("status") == "ok":
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    first = _results(out)
    assert [r["status"] for r in first] == ["ok"] and proc.returncode == -signal.SIGKILL
    stamp = _mtimes(out, [first[0]["id"]])
    assert _batch(m, out, "--workers", "1") == 0
    rows = _results(out)
    assert [r["id"] for r in rows] == IDS[:3] and all(r["status"] == "ok" for r in rows)
    assert next(r for r in rows if r["id"] == first[0]["id"]) == first[0]  # same row, same seconds
    assert _mtimes(out, [first[0]["id"]]) == stamp
    assert sorted(p.name for p in out.iterdir()) == sorted([*IDS[:3], BATCH_RESULTS_CSV, BATCH_SETTINGS_JSON])


def _busy_ray_workers() -> list[int]:
    """PIDs of Ray actor processes that are running a task right now (Ray names them ray::<Class>.<method>)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(b"ray::_RayWorker.run"):
                pids.append(int(d.name))
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the Ray worker through /proc")
def test_a_ray_worker_killed_mid_volume_is_restarted_and_the_volume_completes(manifest, tmp_path, ray_session):
    rows = [r for r in read_manifest(manifest) if r.id in ("ph_none", "ct_chest")]
    cfg = explain_config(build_parser().parse_args(["batch", str(manifest), "--out", "-", *MODELS, *OPTIONS]))
    models, executor = ModelSpec("demo-vqgan", "demo-effusion"), ExecutorSpec(kind="ray", workers=1)
    outcome: dict = {}
    worker = threading.Thread(
        target=lambda: outcome.update(r=run_batch(rows, tmp_path / "out", models, cfg, executor)), daemon=True
    )
    worker.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and worker.is_alive() and time.monotonic() < deadline:
        busy = _busy_ray_workers()
        if busy:  # the actor is inside run(): mid-volume (the models load in its __init__)
            os.kill(busy[0], signal.SIGKILL)
            killed = busy[0]
        time.sleep(0.05)
    worker.join(timeout=600)  # a hang guard, not a speed check
    assert killed is not None and not worker.is_alive()
    assert outcome["r"].ok == 2 and outcome["r"].failed == 0
    results = _results(tmp_path / "out")
    assert [r["status"] for r in results] == ["ok", "ok"]
    assert all((tmp_path / "out" / r["id"] / "summary.json").is_file() for r in results)


def test_a_wrong_target_or_model_stops_the_run_before_any_work(manifest, tmp_path, capsys):
    argv = ["batch", manifest, "--out", tmp_path / "out", *MODELS, "--target", "nodule", *OPTIONS[2:]]
    assert run_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ctcf: error: unknown target 'nodule'") and "\n" not in err
    argv = ["batch", manifest, "--out", tmp_path / "out", "--autoencoder", tmp_path / "none.pt", *MODELS[2:], *OPTIONS]
    assert run_main(argv) == 2
    assert "autoencoder file not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
