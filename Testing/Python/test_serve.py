"""``ctcf serve``: one process answers explain requests, keeps models and the input's encoding, cancels on request."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time

import numpy as np
import SimpleITK as sitk
from cli_runner import run_main

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class Served:
    """A ``ctcf serve`` process and its answers, read on a thread."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "CTCounterfactualLib.cli", "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **ONE_THREAD},
        )
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def send(self, **request) -> None:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def until(self, rid: str, stop=lambda e: e["stage"] in ("done", "error"), limit_s: float = 240) -> list[dict]:
        """The answers to ``rid`` up to the first one ``stop`` accepts."""
        events, deadline = [], time.monotonic() + limit_s
        while True:
            event = self.lines.get(timeout=max(deadline - time.monotonic(), 0.1))
            assert event is not None, self.proc.stderr.read()
            if event.get("id") == rid:
                events.append(event)
                if stop(event):
                    return events

    def close(self) -> int:
        self.proc.stdin.close()
        return self.proc.wait(timeout=60)


def _args(ct, out, models, *extra) -> list[str]:
    ae, clf = models
    args = [str(ct), "--out", str(out), "--autoencoder", str(ae), "--classifier", str(clf), "--target", "effusion"]
    return args + ["--max-steps", "200", "--lambda-sweep-steps", "3", *extra]


def _voxels(folder, name="counterfactual.nrrd") -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(folder / name)))


def test_a_second_request_reuses_models_encoding_and_gradient(
    small_ct, tiny_model_files, tmp_path, torch_on_one_thread
):
    served = Served()
    try:
        served.send(
            id="1", command="explain", args=_args(small_ct, tmp_path / "a", tiny_model_files, "--chunk-size", "4")
        )
        first = served.until("1")
        assert first[-1]["stage"] == "done", first[-1] and first[-1]["reused"] == []
        assert {"encode", "gradient", "search"} <= {e["stage"] for e in first}
        served.send(
            id="2", command="explain", args=_args(small_ct, tmp_path / "b", tiny_model_files, "--chunk-size", "8")
        )
        second = served.until("2")
        assert second[-1]["stage"] == "done" and second[-1]["out"] == str(tmp_path / "b")
        assert second[-1]["reused"] == ["models", "encoding", "gradient"]
        stages = {e["stage"] for e in second}
        assert "search" in stages and not stages & {"encode", "decode", "gradient"}
        assert served.close() == 0
    finally:
        served.proc.kill()
    # exactly what a fresh `ctcf explain` writes for the second request
    fresh = tmp_path / "fresh"
    assert (
        run_main(["explain", *_args(small_ct, fresh, tiny_model_files, "--chunk-size", "8"), "--progress", "none"]) == 0
    )
    for name in ("counterfactual.nrrd", "heatmap.nrrd", "reconstruction.nrrd"):
        np.testing.assert_array_equal(_voxels(tmp_path / "b", name), _voxels(fresh, name), err_msg=name)
    summary = json.loads((tmp_path / "b" / "summary.json").read_text(encoding="utf-8"))
    assert "encode" not in summary["timings_s"] and summary["chunk_size"] == 8


def test_cancel_stops_the_request_writes_nothing_and_the_engine_serves_on(
    long_ct, small_ct, tiny_model_files, tmp_path
):
    served = Served()
    try:
        args = _args(long_ct, tmp_path / "long", tiny_model_files, "--chunk-size", "4", "--batch-size", "1")
        served.send(id="1", command="explain", args=args)
        served.until("1", stop=lambda e: e["stage"] in ("encode", "done", "error"))
        served.send(id="1", command="cancel")
        end = served.until("1")[-1]
        assert end["stage"] == "error" and end["cancelled"] and "cancelled" in end["message"]
        assert not (tmp_path / "long").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".long")]
        served.send(id="2", command="cancel")  # cancelled before it starts: dropped
        served.send(id="2", command="explain", args=_args(small_ct, tmp_path / "never", tiny_model_files))
        assert served.until("2")[-1]["cancelled"] and not (tmp_path / "never").exists()
        ok = _args(small_ct, tmp_path / "ok", tiny_model_files, "--slices", "4:12", "--chunk-size", "4")
        served.send(id="3", command="explain", args=ok)
        done = served.until("3")[-1]
        assert done["stage"] == "done" and "models" in done["reused"], done
    finally:
        served.close()


def test_a_bad_request_is_one_error_line_and_the_engine_goes_on(small_ct, tiny_model_files, tmp_path):
    served = Served()
    try:
        served.send(id="x", command="explain", args=[str(small_ct)])  # no --out
        end = served.until("x")[-1]
        assert end["stage"] == "error" and "bad request" in end["message"] and "--out" in end["message"]
        served.send(
            id="y", command="explain", args=_args(small_ct, tmp_path / "o", tiny_model_files, "--slices", "0:999")
        )
        end = served.until("y")[-1]
        assert end["stage"] == "error" and "999" in end["message"] and "\n" not in end["message"]
        served.send(id="z", command="launch")
        assert "unknown request command" in served.until("z")[-1]["message"]
    finally:
        assert served.close() == 0


def test_a_run_that_encodes_reports_its_estimate_first(small_ct, tiny_model_files, tmp_path, torch_on_one_thread):
    from CTCounterfactualLib.jobs.warm_engine import WarmEngine
    from CTCounterfactualLib.method.explain import ExplainConfig
    from CTCounterfactualLib.params import SearchParams

    engine, events = WarmEngine(), []
    ae, clf = tiny_model_files
    cfg = ExplainConfig(target="effusion", slices=(4, 20), chunk_size=4, search=SearchParams(max_steps=200))
    run = dict(autoencoder=str(ae), classifier=str(clf), progress=lambda *a, **k: events.append((a, k)))
    engine.explain(small_ct, tmp_path / "a", cfg, **run)
    stages = [a[0] for a, _ in events]
    first = next(i for i, (_, k) in enumerate(events) if "estimate" in k)
    assert first < stages.index("encode")
    estimate = events[first][1]["estimate"]
    assert estimate["fits"] and estimate["memory"]["estimate_mb"] > 0 and estimate["memory"]["available_mb"] > 0
    assert (
        estimate["time"]["searches"] == 4 and 0 < estimate["time"]["per_step_s"] < estimate["time"]["before_search_s"]
    )
    assert "peak memory" in events[first][0][3] and "per lambda step in each of 4 searches" in events[first][0][3]
    events.clear()
    engine.explain(small_ct, tmp_path / "b", cfg, **run)  # the encoding is kept: nothing long to estimate
    assert not [k for _, k in events if "estimate" in k] and engine.reused == ["models", "encoding", "gradient"]


def test_a_run_that_does_not_fit_is_refused_before_any_work(small_ct, tiny_model_files, tmp_path, torch_on_one_thread):
    import pytest

    from CTCounterfactualLib.jobs.warm_engine import WarmEngine
    from CTCounterfactualLib.method.explain import ExplainConfig
    from CTCounterfactualLib.method.memory_estimate import OutOfMemory

    events = []
    ae, clf = tiny_model_files
    with pytest.raises(OutOfMemory, match="not enough memory"):
        WarmEngine().explain(
            small_ct,
            tmp_path / "a",
            ExplainConfig(target="effusion"),
            autoencoder=str(ae),
            classifier=str(clf),
            progress=lambda *a, **k: events.append((a, k)),
            available_memory=8 * 2**20,
        )
    (estimate,) = [k["estimate"] for _, k in events if "estimate" in k]
    assert not estimate["fits"] and "not enough memory" in estimate["reason"]
    assert "encode" not in [a[0] for a, _ in events] and not (tmp_path / "a").exists()
