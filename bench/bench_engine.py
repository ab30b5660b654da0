"""Benchmark of the explanation engine on CPU: wall time and the engine's own peak memory.

What it measures
----------------
1. ``scan`` mode, fast path versus faithful (reference) path, on one small random model (a tiny
   VQ-GAN slice autoencoder and a tiny 3D classifier whose head is centred with
   ``center_classifier`` so that the reconstruction scores 0.9; its ``gain`` is set so that the
   lambda search stops on a real rule after a few steps, as with a trained model) and one
   deterministic synthetic HU volume (smooth random Gaussian blobs plus Gaussian noise, clipped
   to [-1000, 1000] HU, seeded). Both paths run with identical settings; the tables give wall
   time, engine peak memory, the faithful/fast ratios, and how well the outputs agree (lambda
   and stop reason per chunk, predictions, counterfactual and heatmap in [0, 1] units).
2. ``joint`` mode (fast path) for several depths at the same in-plane size: engine peak memory
   against the size of one float32 volume and of the latents, to show that the peak grows by a
   roughly constant number of volume-sized arrays, not by decoder gradient work.

Sizes (the ``full`` preset) follow the real use on a small scale: many chunks (16) in a volume
much deeper than a chunk, decoding dominating the cost (the classifier is cheap), and the
decoder working at its native resolution (autoencoder size = in-plane size = 32; latents 16x16
as the published CT VQ-GAN's). What decides the ratios: per chunk the faithful path decodes
every slice at every lambda, the fast path only the chunk's slices, so the time ratio tends to
the number of chunks (less the fast path's one-off encode, decode and gradient of the whole
volume); the faithful path keeps the whole chunk's decoder graph alive, the fast path one batch
of it, so the memory ratio tends to ``chunk_size / batch_size`` (8 here), diluted by what both
hold: about ten volume-sized arrays and the classifier's forward/backward buffers.

How
---
Every case runs in its own child process (``multiprocessing``, 'spawn' context), one after the
other, so that peak memory is measured per case. In the child, after the imports, the model
building, the volume creation and ``center_classifier``, the script

* pays torch's one-time lazy import (the first ``torch.autograd.grad`` with ``grad_outputs``
  imports sympy, 20-35 MiB of Python modules, which only the fast path's decoder VJP would
  otherwise trigger; its size is printed, not counted),
* gives the C heap's free pages back (``malloc_trim``), records the RSS (``VmRSS``) and resets
  the kernel's high-water mark (writing 5 to ``/proc/self/clear_refs``),
* runs ``explain`` and reads the high-water mark (``VmHWM``).

Engine peak = high-water mark minus the RSS just before ``explain``. The reset matters:
``getrusage(RUSAGE_SELF).ru_maxrss`` never goes down, so it would also hold a setup peak above
the baseline; the ``ru_maxrss``-based figure (same baseline) is printed beside it as a check.
If the reset is refused, the script falls back to ``ru_maxrss`` and says so. Peak RSS includes
what glibc keeps of freed memory (arrays under its dynamic mmap threshold, up to 32 MiB, are
recycled inside the heap); ``--live-memory`` makes RSS follow live memory instead, for diagnosis.
Wall time is ``time.perf_counter`` around ``explain`` only. The parent process never imports
torch; torch's thread count is left at its default and reported by the children. Timings on a
shared machine vary with its load, so the load average is printed with them.

Linux only (``/proc/self``). Run: ``python bench/bench_engine.py`` (full, about 3 minutes on 2 CPU cores) or ``--quick``
(a smoke run of the script itself, seconds). The Markdown report goes to stdout, progress to
stderr. ``--help`` lists the overrides of the preset sizes.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

HU_RANGE = 2000.0  # the autoencoder window -1000..1000 HU: [0, 1] units = HU / 2000
TARGET = "effusion"  # target 0 of tiny_classifier
LIVE_MMAP_THRESHOLD = 65536  # bytes, for --live-memory


@dataclass(frozen=True)
class Case:
    """One ``explain`` run in its own process."""

    label: str
    mode: str  # "scan" or "joint"
    faithful: bool
    slices: int
    hw: int  # in-plane size (square)
    chunk: int
    batch: int
    ae_size: int  # tiny_autoencoder convention size (slices resized to ae_size x ae_size)
    ch: int  # tiny_autoencoder base channel count
    width: int  # tiny_classifier width
    gain: float  # tiny_classifier gain: how strongly the random classifier reacts
    max_steps: float  # SearchParams.max_steps; the other search params stay at their defaults
    seed: int = 0
    prob: float = 0.9  # center_classifier target probability


@dataclass
class Settings:
    """The benchmark's sizes; ``full`` and ``quick`` presets, each overridable from the command line."""

    slices: int
    hw: int
    chunk: int
    batch: int
    ae_size: int
    ch: int
    width: int
    gain: float
    max_steps: float
    joint_hw: int
    joint_slices: list[int] = field(default_factory=list)


PRESETS = {
    "full": Settings(
        slices=256,
        hw=32,
        chunk=16,
        batch=2,
        ae_size=32,
        ch=24,
        width=4,
        gain=3e4,
        max_steps=3000.0,
        joint_hw=256,
        joint_slices=[16, 64, 256],
    ),
    "quick": Settings(
        slices=32,
        hw=32,
        chunk=8,
        batch=2,
        ae_size=32,
        ch=8,
        width=4,
        gain=5e3,
        max_steps=3000.0,
        joint_hw=64,
        joint_slices=[8, 16, 32],
    ),
}


# ----------------------------------------------------------------------------- child side


def synthetic_volume(depth: int, hw: int, seed: int) -> np.ndarray:
    """Deterministic (D, hw, hw) float32 HU volume: smooth Gaussian blobs on -700 HU plus noise."""
    rng = np.random.default_rng([seed, depth, hw])
    axes = [np.arange(n, dtype=np.float32) for n in (depth, hw, hw)]
    vol = np.full((depth, hw, hw), -700.0, dtype=np.float32)
    for _ in range(6 + depth // 8):
        amp = np.float32(rng.uniform(-300.0, 1200.0))
        # blob centre and radius in voxels; in-plane radius relative to hw, through-plane in slices
        centre = rng.uniform(0.0, 1.0, 3) * np.array([depth, hw, hw])
        sigma = rng.uniform(0.05, 0.2, 3) * np.array([min(depth, 64), hw, hw])
        ez, ey, ex = (
            np.exp(-0.5 * ((a - c) / s) ** 2).astype(np.float32) for a, c, s in zip(axes, centre, sigma, strict=True)
        )
        vol += amp * ez[:, None, None] * ey[None, :, None] * ex[None, None, :]
    vol += rng.normal(0.0, 30.0, vol.shape).astype(np.float32)
    return np.clip(vol, -1000.0, 1000.0, out=vol)


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def _reset_high_water_mark() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _maxrss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _preload_lazy_imports(torch: Any) -> None:
    """Pay torch's one-time lazy imports now: the first ``torch.autograd.grad`` call with explicit
    ``grad_outputs`` (the fast path's decoder VJP) imports sympy and mpmath, some 30 MiB of Python
    modules that stay for the life of the process. That is not memory of the engine's work."""
    x = torch.zeros(1, requires_grad=True)
    torch.autograd.grad(x * 2.0, x, torch.ones(1))


def _release_free_heap() -> bool:
    """Give the C heap's free pages back to the OS (glibc ``malloc_trim``), so that the RSS before
    ``explain`` holds only live memory and the engine cannot hide its peak in pages the setup freed."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        return False
    return True


def run_case(case: Case, out_dir: str) -> dict[str, Any]:
    """Build the models and the volume, run ``explain`` once, return its time, memory and outputs."""
    import torch

    from CTCounterfactualLib.method.explain import ExplainConfig, explain
    from CTCounterfactualLib.params import SearchParams
    from CTCounterfactualLib.training.tiny_models import center_classifier, tiny_autoencoder, tiny_classifier

    ae = tiny_autoencoder(case.seed, size=case.ae_size, ch=case.ch)
    clf = tiny_classifier(case.seed, width=case.width, gain=case.gain)
    hu = synthetic_volume(case.slices, case.hw, case.seed)
    center_classifier(clf, ae, torch.from_numpy(hu), prob=case.prob)
    # the reference's lambda, output map and decoded CF at the input's resolution: the fast path that equals
    # --faithful
    params = SearchParams(max_steps=case.max_steps, lambda_scale="reference", counterfactual="decoded")
    cfg = ExplainConfig(
        search_resolution="input",
        output_map="reference",
        target=TARGET,
        mode=case.mode,
        chunk_size=case.chunk,
        faithful=case.faithful,
        batch_size=case.batch,
        search=params,
        device="cpu",
    )
    gc.collect()
    before_preload = _status_kib("VmRSS")
    _preload_lazy_imports(torch)
    gc.collect()
    preload_kib = _status_kib("VmRSS") - before_preload
    trimmed = _release_free_heap()
    base_rss = _status_kib("VmRSS")
    reset_ok = _reset_high_water_mark()
    t0 = time.perf_counter()
    res = explain(hu, ae, clf, cfg)
    wall = time.perf_counter() - t0
    hwm = _status_kib("VmHWM") if reset_ok else _maxrss_kib()
    maxrss = _maxrss_kib()

    latent_side = case.ae_size // ae.model.downsampling
    path = Path(out_dir) / f"{case.label}.npz"
    np.savez(path, counterfactual_hu=res.counterfactual_hu, heatmap=res.heatmap)
    return {
        "label": case.label,
        "wall_s": wall,
        "timings": dict(res.timings),
        "base_rss_mib": base_rss / 1024,
        "preload_mib": preload_kib / 1024,
        "engine_peak_mib": (hwm - base_rss) / 1024,
        "engine_peak_maxrss_mib": (maxrss - base_rss) / 1024,
        "hwm_reset": reset_ok,
        "trimmed": trimmed,
        "volume_mib": hu.nbytes / 2**20,
        "latent_mib": case.slices * ae.model.config.embed_dim * latent_side**2 * 4 / 2**20,
        "latent_shape": [ae.model.config.embed_dim, latent_side, latent_side],
        "chunks": [
            {
                "start": c.start,
                "stop": c.stop,
                "lam": c.lam,
                "stop_reason": c.stop_reason,
                "preds": [c.prediction_before, c.prediction_min, c.prediction_cf, *c.sweep_predictions],
            }
            for c in res.chunks
        ],
        "chosen": res.chosen,
        "predictions": dict(res.predictions),
        "npz": str(path),
        "search": asdict(params),
        "search_default": asdict(SearchParams()),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
    }


# ----------------------------------------------------------------------------- parent side


def run_in_child(case: Case, out_dir: str) -> dict[str, Any]:
    """Run one case in a fresh spawned process (fresh interpreter, own peak memory)."""
    print(f"[bench] {case.label}: {case.mode} faithful={case.faithful} slices={case.slices} ...", file=sys.stderr)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes=1) as pool:
        result = pool.apply(run_case, (case, out_dir))
    print(
        f"[bench] {case.label}: {result['wall_s']:.1f} s, engine peak {result['engine_peak_mib']:.1f} MiB",
        file=sys.stderr,
    )
    return result


def _load_avg() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _fmt_s(x: float) -> str:
    return f"{x:.2f}"


def _fmt_stages(t: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in t.items())


def agreement(fast: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    """Compare the fast and faithful outputs chunk by chunk and voxel by voxel."""
    fc, rc = fast["chunks"], ref["chunks"]
    pairs = list(zip(fc, rc, strict=True))
    pred_diff = max((abs(x - y) for a, b in pairs for x, y in zip(a["preds"], b["preds"], strict=True)), default=0.0)
    with np.load(fast["npz"]) as f, np.load(ref["npz"]) as r:
        cf_diff = float(np.abs(f["counterfactual_hu"] - r["counterfactual_hu"]).max()) / HU_RANGE
        heat_diff = float(np.abs(f["heatmap"] - r["heatmap"]).max()) / HU_RANGE
    return {
        "n": len(pairs),
        "same_lam": sum(a["lam"] == b["lam"] for a, b in pairs),
        "same_reason": sum(a["stop_reason"] == b["stop_reason"] for a, b in pairs),
        "pred_diff": pred_diff,
        "cf_diff": cf_diff,
        "heat_diff": heat_diff,
        "same_chosen": fast["chosen"] == ref["chosen"],
    }


def search_steps(lam: float, step: float) -> int:
    """How many lambdas after 0 the search evaluated to stop at ``lam`` (the schedule of
    ``search.next_lambda``: lambda <- lambda - step + floor(lambda / 10))."""
    cur, n = 0.0, 0
    while cur > lam:
        cur, n = cur - step + cur // 10, n + 1
    return n


def search_summary(result: dict[str, Any]) -> str:
    """Lambda range, steps and stop reasons over the chunks of one run."""
    lams = [c["lam"] for c in result["chunks"]]
    steps = [search_steps(lam, result["search"]["step_size"]) for lam in lams]
    reasons: dict[str, int] = {}
    for c in result["chunks"]:
        reasons[c["stop_reason"]] = reasons.get(c["stop_reason"], 0) + 1
    span = f"{max(lams):g}" if min(lams) == max(lams) else f"{max(lams):g} to {min(lams):g}"
    nsteps = f"{min(steps)}" if min(steps) == max(steps) else f"{min(steps)}-{max(steps)}"
    why = ", ".join(f"{k} ({v})" for k, v in reasons.items())
    return f"lambda {span} ({nsteps} search step(s) per chunk, then the sweep); stop: {why}"


def report(s: Settings, fast: dict, ref: dict, joint: list[dict], preset: str, total_s: float, loads: list[str]) -> str:
    """The Markdown report."""
    out: list[str] = []
    w = out.append
    chunks = -(-s.slices // s.chunk)
    search = fast["search"]
    changed = sorted(k for k, v in search.items() if v != fast["search_default"][k])
    w(f"### Engine benchmark ({preset} run)")
    w("")
    w(
        f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"torch {fast['torch']}, torch threads {fast['threads']} (the default; inter-op {fast['interop_threads']})"
    )
    w(f"- load average (1, 5, 15 min) before the run: {loads[0]}; after: {loads[1]}")
    w(
        f"- models: `tiny_autoencoder(seed=0, size={s.ae_size}, ch={s.ch})` (latent "
        f"{'x'.join(map(str, fast['latent_shape']))} per slice), `tiny_classifier(seed=0, width={s.width}, "
        f"gain={s.gain:g})`, head centred by `center_classifier(prob=0.9)` on each volume; target `{TARGET}`"
    )
    w(
        "- volume: synthetic and seeded (`synthetic_volume` here: smooth Gaussian blobs on -700 HU plus "
        "N(0, 30 HU) noise, clipped to [-1000, 1000] HU)"
    )
    w(
        f"- scan: {s.slices} slices x {s.hw} x {s.hw}, `chunk_size={s.chunk}` ({chunks} chunks), "
        f"`batch_size={s.batch}`, device cpu, float32"
    )
    w(
        f"- search: `SearchParams({', '.join(f'{k}={v!r}' for k, v in search.items())})`"
        + (f", not the defaults in {changed}" if changed else " (the defaults)")
    )
    if joint:
        w(
            f"- joint: fast path, {', '.join(map(str, s.joint_slices))} slices x {s.joint_hw} x {s.joint_hw}, "
            f"`batch_size={s.batch}`, same models and search"
        )
    mem = "VmHWM, reset just before `explain`" if fast["hwm_reset"] else "ru_maxrss (the VmHWM reset was refused)"
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        mem += f"; glibc `MALLOC_MMAP_THRESHOLD_={os.environ['MALLOC_MMAP_THRESHOLD_']}`"
    w(
        f"- engine peak memory = peak RSS during `explain` ({mem}) minus the RSS just before it (after "
        f"`malloc_trim`{'' if fast['trimmed'] else ', unavailable here'}); each case in its own spawned process. "
        f"Not counted: torch's one-time lazy import on the first `autograd.grad` with `grad_outputs` "
        f"(+{fast['preload_mib']:.0f} MiB, paid before the baseline). Time = wall time of `explain`."
    )
    w("")
    w("#### Scan mode: fast vs faithful")
    w("")
    w("| path | wall time (s) | engine peak (MiB) | peak via ru_maxrss (MiB) | RSS before (MiB) | stages (s) |")
    w("|---|---:|---:|---:|---:|---|")
    for name, r in (("fast", fast), ("faithful", ref)):
        w(
            f"| {name} | {_fmt_s(r['wall_s'])} | {r['engine_peak_mib']:.1f} | {r['engine_peak_maxrss_mib']:.1f} "
            f"| {r['base_rss_mib']:.1f} | {_fmt_stages(r['timings'])} |"
        )
    t_ratio = ref["wall_s"] / fast["wall_s"]
    m_ratio = ref["engine_peak_mib"] / fast["engine_peak_mib"] if fast["engine_peak_mib"] > 0 else float("nan")
    w(f"| **faithful / fast** | **{t_ratio:.1f}x** | **{m_ratio:.1f}x** | | | |")
    w("")
    a = agreement(fast, ref)
    w("| agreement (fast vs faithful) | value |")
    w("|---|---|")
    w(f"| lambda per chunk identical | {a['same_lam']} / {a['n']} chunks |")
    w(f"| stop reason per chunk identical | {a['same_reason']} / {a['n']} chunks |")
    w(f"| chosen chunk identical | {'yes' if a['same_chosen'] else 'no'} |")
    w(f"| max abs prediction difference (before, min, CF, sweep; all chunks) | {a['pred_diff']:.2e} |")
    w(f"| max abs counterfactual difference, [0, 1] units (HU / 2000) | {a['cf_diff']:.2e} |")
    w(f"| max abs heatmap difference, [0, 1] units | {a['heat_diff']:.2e} |")
    w(f"| search (fast path) | {search_summary(fast)} |")
    w("")
    ok_t, ok_m = t_ratio >= 10.0, m_ratio >= 4.0
    w(
        f"Targets (fast >= 10x faster and >= 4x lower peak memory than faithful): time {t_ratio:.1f}x "
        f"({'met' if ok_t else 'MISSED'}), memory {m_ratio:.1f}x ({'met' if ok_m else 'MISSED'})"
        + (" (the targets are for the full run's sizes)." if preset.startswith("quick") else ".")
    )
    if joint:
        w("")
        w("#### Joint mode (fast path): peak memory against depth")
        w("")
        w(
            "| slices | one volume (MiB) | latents (MiB) | engine peak (MiB) | peak / volume "
            "| added peak / added volume | wall time (s) | search |"
        )
        w("|---:|---:|---:|---:|---:|---:|---:|---|")
        prev: dict | None = None
        for d, r in zip(s.joint_slices, joint, strict=True):
            slope = (
                f"{(r['engine_peak_mib'] - prev['engine_peak_mib']) / (r['volume_mib'] - prev['volume_mib']):.1f}"
                if prev is not None
                else ""
            )
            w(
                f"| {d} | {r['volume_mib']:.1f} | {r['latent_mib']:.2f} | {r['engine_peak_mib']:.1f} "
                f"| {r['engine_peak_mib'] / r['volume_mib']:.1f} | {slope} | {_fmt_s(r['wall_s'])} "
                f"| {search_summary(r)} |"
            )
            prev = r
        if len(joint) >= 2:
            lo, hi = joint[0], joint[-1]
            k = (hi["engine_peak_mib"] - lo["engine_peak_mib"]) / (hi["volume_mib"] - lo["volume_mib"])
            w("")
            w(
                f"From {s.joint_slices[0]} to {s.joint_slices[-1]} slices the peak grows by {k:.1f} MiB per MiB of "
                f"volume (about {k:.0f} volume-sized float32 arrays alive at the peak); the part that does not grow "
                f"with depth is about {lo['engine_peak_mib'] - k * lo['volume_mib']:.0f} MiB."
            )
    w("")
    w(f"Total benchmark time (all child processes, with model building): {total_s:.0f} s.")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: check that the script works")
    for name, kind in (
        ("slices", int),
        ("hw", int),
        ("chunk", int),
        ("batch", int),
        ("ae-size", int),
        ("ch", int),
        ("width", int),
        ("gain", float),
        ("max-steps", float),
        ("joint-hw", int),
    ):
        ap.add_argument(f"--{name}", type=kind, default=None, help="override the preset")
    ap.add_argument("--joint-slices", type=int, nargs="+", default=None, help="override the preset")
    ap.add_argument("--skip-joint", action="store_true", help="only the scan comparison")
    ap.add_argument(
        "--live-memory",
        action="store_true",
        help=f"children run with MALLOC_MMAP_THRESHOLD_={LIVE_MMAP_THRESHOLD}: every array of 64 KiB or more is\n"
        "mmapped and given back when freed, so peak RSS follows live memory instead of glibc's heap\n"
        "retention (a diagnosis: allocation gets slower, so the wall times are not representative)",
    )
    args = ap.parse_args(argv)
    if args.live_memory:
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(LIVE_MMAP_THRESHOLD)  # read by each spawned child's glibc

    preset = "quick" if args.quick else "full"
    overrides = {k: v for k, v in vars(args).items() if k in Settings.__dataclass_fields__ and v is not None}
    s = replace(PRESETS[preset], **overrides)
    if args.skip_joint:
        s.joint_slices = []
    if args.live_memory:
        preset += ", --live-memory"
    if overrides:
        preset += ", overridden: " + ", ".join(f"{k}={v}" for k, v in overrides.items())

    base = Case(
        label="",
        mode="scan",
        faithful=False,
        slices=s.slices,
        hw=s.hw,
        chunk=s.chunk,
        batch=s.batch,
        ae_size=s.ae_size,
        ch=s.ch,
        width=s.width,
        gain=s.gain,
        max_steps=s.max_steps,
    )
    loads = [_load_avg()]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ctcf-bench-") as tmp:
        fast = run_in_child(replace(base, label="scan-fast"), tmp)
        ref = run_in_child(replace(base, label="scan-faithful", faithful=True), tmp)
        joint = [
            run_in_child(replace(base, label=f"joint-{d}", mode="joint", slices=d, hw=s.joint_hw, chunk=d), tmp)
            for d in s.joint_slices
        ]
        total = time.perf_counter() - t0
        loads.append(_load_avg())
        print(report(s, fast, ref, joint, preset, total, loads))


if __name__ == "__main__":
    main()
