"""Memory safety: the peak estimate against measured peaks, the pre-flight refusal, batch shrinking, OOM as an error."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.jobs.explain_file import explain_file
from CTCounterfactualLib.method.explain import ExplainConfig
from CTCounterfactualLib.method.memory_estimate import (
    HEADROOM,
    OutOfMemory,
    _probe,
    available_memory,
    choose_batch_size,
    estimate_peak,
    is_out_of_memory,
    profile_models,
)
from CTCounterfactualLib.params import SearchParams
from CTCounterfactualLib.store.catalog import load_bundled_autoencoder, load_bundled_classifier
from CTCounterfactualLib.training.tiny_models import tiny_autoencoder, tiny_classifier

ROOT = Path(__file__).resolve().parents[2]

# One explain in a fresh process: the estimate, then the measured peak RSS increase (VmHWM after resetting the
# high-water mark just before explain, minus VmRSS then), as bench/bench_engine.py measures it.
MEASURE = textwrap.dedent(
    """
    import ctypes, ctypes.util, gc, json, sys
    import numpy as np, torch
    torch.set_num_threads(1)
    from CTCounterfactualLib.method.explain import ExplainConfig, explain
    from CTCounterfactualLib.method.memory_estimate import fit_batch_size
    from CTCounterfactualLib.params import SearchParams
    from CTCounterfactualLib.training.tiny_models import tiny_autoencoder, tiny_classifier

    mode, depth, hw, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    ae, clf = tiny_autoencoder(0, size=32, ch=8), tiny_classifier(0)
    rng = np.random.default_rng(0)
    hu = np.clip(rng.normal(-500.0, 300.0, (depth, hw, hw)), -1000, 1000).astype(np.float32)
    cfg = ExplainConfig(target="effusion", mode=mode, chunk_size=8, batch_size=batch,
                        search=SearchParams(max_steps=40.0), device="cpu")
    cfg, record = fit_batch_size(hu.shape, ae, clf, cfg, available=2**40)

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    gc.collect()
    ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    base = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    explain(hu, ae, clf, cfg)
    print(json.dumps({"peak": status("VmHWM") - base, "estimate": record["estimate_mb"] * 2**20,
                      "batch": cfg.batch_size}))
    """
)


@pytest.mark.parametrize(("mode", "depth", "hw", "batch"), [("joint", 48, 256, 4), ("scan", 64, 256, 2)])
def test_estimate_is_within_a_factor_of_two_of_the_measured_peak(mode, depth, hw, batch):
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, mode, str(depth), str(hw), str(batch)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["batch"] == batch  # a budget of 1 TiB keeps the requested batch size
    assert 0.5 <= r["estimate"] / r["peak"] <= 2.0, r


def test_impossible_budget_fails_before_any_work(tmp_path, small_ct, tiny_model_files):
    ae_path, clf_path = tiny_model_files
    stages: list[str] = []
    out = tmp_path / "out"
    cfg = ExplainConfig(target="effusion", chunk_size=8, batch_size=8)
    with pytest.raises(OutOfMemory) as exc:
        explain_file(
            small_ct,
            out,
            cfg,
            autoencoder_path=ae_path,
            classifier_path=clf_path,
            available_memory=2**20,  # 1 MiB
            progress=lambda stage, done, total, message: stages.append(stage),
        )
    msg = str(exc.value)
    assert isinstance(exc.value, CTCFError) and "\n" not in msg
    assert msg.startswith("not enough memory: this run needs about ") and "but cpu has 1 MiB available" in msg
    assert "a smaller --slices range" in msg and "a smaller --chunk-size" in msg
    assert set(stages) == {"load"} and not out.exists()  # nothing encoded, nothing written


def test_batch_size_shrinks_under_a_tight_budget(tmp_path, small_ct):
    ae, _ = load_bundled_autoencoder()
    clf, _ = load_bundled_classifier()
    shape = (24, 64, 64)
    profile = profile_models(ae, clf, shape[1:])
    est = [estimate_peak(profile, shape, (0, 24), "scan", b, 8).total_bytes for b in range(1, 9)]
    assert est == sorted(est) and est[-1] > est[0]  # the decoder batch sets the peak here
    budget = int((est[2] + est[3]) / 2 / HEADROOM)  # room for batch 3, not 4
    assert choose_batch_size(profile, shape, (0, 24), "scan", 8, budget, 8).batch_size == 3
    assert choose_batch_size(profile, shape, (0, 24), "scan", 2, budget, 8).batch_size == 2  # never raised
    cfg = ExplainConfig(target="pleural effusion", chunk_size=8, batch_size=8, search=SearchParams(max_steps=40.0))
    summary = explain_file(small_ct, tmp_path / "out", cfg, autoencoder=ae, classifier=clf, available_memory=budget)
    mem = summary["memory"]
    assert mem["batch_size_requested"] == 8 and mem["batch_size"] == summary["batch_size"] == 3
    assert mem["available_mb"] == round(budget / 2**20, 1)
    assert json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))["memory"] == mem
    with pytest.raises(OutOfMemory, match="needs about"):
        choose_batch_size(profile, shape, (0, 24), "scan", 8, int(est[0] / HEADROOM) - 2**20, 8)


# A real out-of-memory: the address space is capped just above what the process holds, the pre-flight check
# sees the machine's free RAM (it fits), and the tiny VQ-GAN without resizing puts attention on
# (128 x 128)^2 pairs of a 256 x 256 slice (1 GiB): the allocation fails for real.
REAL_OOM = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    from CTCounterfactualLib.cli import main
    from CTCounterfactualLib.method.explain import ExplainConfig
    from CTCounterfactualLib.errors import CTCFError
    from CTCounterfactualLib.jobs.explain_file import explain_file
    from CTCounterfactualLib.training.tiny_models import tiny_autoencoder
    from CTCounterfactualLib.data.volume_io import Geometry, write_volume
    import numpy as np

    folder = Path(sys.argv[1])
    ae = tiny_autoencoder(0, size=None, ch=8)
    torch.save(ae.model.state_dict(), folder / "native.pt")
    (folder / "native.json").write_text(json.dumps(
        {"architecture": ae.model.config.to_dict(), "convention": ae.convention.to_dict()}))
    hu = np.random.default_rng(0).normal(-500.0, 100.0, (2, 256, 256)).astype(np.float32)
    geometry = Geometry((256, 256, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    write_volume(hu, geometry, folder / "ct.nrrd")
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            vm = int(line.split()[1]) * 1024
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    soft = vm + 700 * 2**20 if hard == resource.RLIM_INFINITY else min(vm + 700 * 2**20, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    result = {}
    try:
        explain_file(folder / "ct.nrrd", folder / "py", ExplainConfig(target="effusion", batch_size=1, chunk_size=2),
                     autoencoder_path=folder / "native.pt", classifier_path=sys.argv[2], available_memory=2**40)
    except CTCFError as e:
        result["python"] = [type(e).__name__, str(e)]
    result["cli"] = main(["explain", str(folder / "ct.nrrd"), "--out", str(folder / "cli"), "--autoencoder",
                          str(folder / "native.pt"), "--classifier", sys.argv[2], "--target", "effusion",
                          "--batch-size", "1", "--chunk-size", "2", "--progress", "none"])
    print(json.dumps(result))
    """
)


def test_real_out_of_memory_becomes_a_clear_error(tmp_path, tiny_model_files):
    _, clf_path = tiny_model_files
    out = subprocess.run(
        [sys.executable, "-c", REAL_OOM, str(tmp_path), str(clf_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    kind, msg = r["python"]
    assert kind == "OutOfMemory" and msg.startswith("out of memory during the run")
    assert "a smaller --batch-size" in msg and "--device cpu" not in msg and "\n" not in msg  # already on CPU
    assert r["cli"] == 3  # the CLI keeps its out-of-memory exit status
    assert "ctcf: error: out of memory during the run" in out.stderr
    assert not (tmp_path / "py").exists() and not (tmp_path / "cli").exists()


def test_meta_probe_matches_a_real_probe():
    ae = tiny_autoencoder(0, size=32, ch=8)
    clf = tiny_classifier(0)
    x = clf.convention.to_model(torch.zeros(4, 48, 48))
    meta = _probe(clf.module, x, torch.float32)  # (total, largest) saved bytes
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; users still ship it
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(clf.module)  # TorchScript is probed for real
    real = _probe(scripted, x, torch.float32)
    assert meta[0] > meta[1] > 0
    assert meta[0] == pytest.approx(real[0], rel=0.02) and meta[1] == real[1]
    assert _probe(clf.module, x, torch.float64) == pytest.approx((2 * meta[0], 2 * meta[1]), rel=0.02)
    p1 = profile_models(ae, clf, (64, 64))
    p2 = profile_models(ae, clf, (128, 128))
    assert p2.classifier_bytes_per_slice == pytest.approx(4 * p1.classifier_bytes_per_slice, rel=0.1)
    # the decoder works at the convention's 32 x 32 whatever the volume's size; resizing its output saves nothing
    assert p2.decoder_bytes_per_slice == p1.decoder_bytes_per_slice
    native = profile_models(tiny_autoencoder(0, size=None, ch=8), clf, (64, 64))
    assert native.decoder_bytes_per_slice > 4 * p1.decoder_bytes_per_slice  # 64 x 64 with attention on 32 x 32


def test_available_memory_and_oom_recognition():
    avail = available_memory("cpu")
    total = next(int(x.split()[1]) * 1024 for x in open("/proc/meminfo", encoding="utf-8") if x.startswith("MemTotal:"))
    assert 0 < avail <= total
    with pytest.raises(RuntimeError) as exc:
        torch.empty(2**50, dtype=torch.uint8)  # a real failed allocation (1 PiB)
    assert is_out_of_memory(exc.value)
    assert not is_out_of_memory(RuntimeError("shapes do not match"))
