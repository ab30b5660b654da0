"""Measure the engine's peak memory and fit the constants of ``CTCounterfactualLib/memory_estimate.py``.

Each case runs ``explain`` once in a fresh spawned process, measured as ``bench_engine.py`` does: imports and
models first, ``malloc_trim``, RSS baseline, high-water-mark reset via ``/proc/self/clear_refs``, ``explain``;
peak = VmHWM - baseline. The cases vary depth, in-plane size, mode and batch size for the tiny random models
(also without resizing, where the decoder's attention dominates) and the bundled demo models, so that each
term of the estimate moves on its own. Probes are recomputed here, so a changed probe reuses old measurements.

K_CLASSIFIER: one forward + backward of a random I3ResNet-152 (Merlin's architecture) on a small input, the
largest measured peak over the probe's estimate (``--probe-repeats`` runs; the measurement is noisy). BASE is
given (``--base-mib``). N_VOLUME, N_FRAME, K_DECODER and LARGEST_FACTOR are chosen on a grid to minimise the worst
|log(estimate / measured)| over the cases, underestimates weighted twice (the model has a max() over phases, so
this is not a least-squares problem). Prints the fitted constants and a Markdown table (measured, estimated with
the fitted and with the current constants). Linux only; about 4 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_engine import _release_free_heap, _reset_high_water_mark, _status_kib, synthetic_volume  # noqa: E402

MIB = 2**20
UNDER_WEIGHT = 2.0  # an underestimate (a run that does not fit) costs twice an overestimate of the same ratio


@dataclass(frozen=True)
class Case:
    models: str  # tiny | tiny-native | demo
    mode: str
    depth: int
    hw: int
    batch: int
    chunk: int = 8


def _models(kind: str):
    from CTCounterfactualLib.store.catalog import load_bundled_autoencoder, load_bundled_classifier
    from CTCounterfactualLib.training.tiny_models import tiny_autoencoder, tiny_classifier

    if kind == "tiny":
        return tiny_autoencoder(0, size=32, ch=8), tiny_classifier(0), "effusion"
    if kind == "tiny-native":  # no resize: attention on (H/2 x W/2)^2 pairs dominates the decoder
        return tiny_autoencoder(0, size=None, ch=8), tiny_classifier(0), "effusion"
    return load_bundled_autoencoder()[0], load_bundled_classifier()[0], "pleural effusion"


def run_case(case: Case) -> dict:
    import torch

    from CTCounterfactualLib.method.explain import ExplainConfig, explain
    from CTCounterfactualLib.params import SearchParams

    torch.set_num_threads(1)
    ae, clf, target = _models(case.models)
    hu = synthetic_volume(case.depth, case.hw, 0)
    cfg = ExplainConfig(
        target=target,
        mode=case.mode,
        chunk_size=case.chunk,
        batch_size=case.batch,
        search=SearchParams(max_steps=40.0),
        device="cpu",
    )
    gc.collect()
    _release_free_heap()
    base = _status_kib("VmRSS")
    if not _reset_high_water_mark():
        raise SystemExit("cannot reset the high-water mark (/proc/self/clear_refs)")
    explain(hu, ae, clf, cfg)
    peak = (_status_kib("VmHWM") - base) * 1024
    return {"case": case, "peak": peak}


def regressors(c: Case, p, largest_factor: float) -> dict[str, float]:
    """The estimate's terms for case ``c`` with profile ``p`` (bytes)."""
    slice_bytes = c.hw * c.hw * 4
    frame = c.depth if c.mode == "joint" else min(c.chunk, c.depth)
    return {
        "volume": c.depth * slice_bytes,
        "frame": frame * slice_bytes,
        "decoder": c.batch * (p.decoder_saved + largest_factor * p.decoder_largest),
        "classifier": c.depth * (p.classifier_saved + largest_factor * p.classifier_largest),
        "latents": 4 * c.depth * p.latent_bytes_per_slice,
    }


def classifier_probe() -> dict:
    """One forward + backward of a random I3ResNet-152 (Merlin's architecture) on [1, 1, 64, 64, 16]: peak RSS
    increase against the probe's saved bytes."""
    import torch

    from CTCounterfactualLib.method.memory_estimate import _probe
    from CTCounterfactualLib.models.merlin import MerlinI3ResNet

    torch.set_num_threads(2)
    net = MerlinI3ResNet().eval()
    for q in net.parameters():
        q.requires_grad_(False)
    x = torch.zeros(1, 1, 64, 64, 16)
    saved, largest = _probe(net, x, torch.float32)
    gc.collect()
    _release_free_heap()
    base = _status_kib("VmRSS")
    _reset_high_water_mark()
    xx = x.clone().requires_grad_(True)
    out = net(xx)
    out = out[0] if isinstance(out, (tuple, list)) else out
    (g,) = torch.autograd.grad(out.sum(), xx)
    peak = (_status_kib("VmHWM") - base) * 1024
    return {"saved": saved, "largest": largest, "peak": peak}


def _in_child(fn, *args):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes=1) as pool:
        return pool.apply(fn, args)


CASES = [
    Case("tiny", "joint", 16, 256, 1),
    Case("tiny", "joint", 16, 256, 32),
    Case("tiny", "joint", 64, 256, 2),
    Case("tiny", "joint", 64, 256, 16),
    Case("tiny", "joint", 128, 256, 4),
    Case("tiny", "scan", 64, 256, 2),
    Case("tiny", "scan", 128, 256, 8),
    Case("tiny", "joint", 32, 128, 64),
    Case("tiny-native", "joint", 16, 128, 1),
    Case("tiny-native", "joint", 16, 128, 8),
    Case("demo", "joint", 16, 256, 1),
    Case("demo", "joint", 16, 256, 16),
    Case("demo", "joint", 48, 256, 4),
    Case("demo", "scan", 48, 256, 16),
    Case("demo", "joint", 32, 64, 32),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-mib", type=float, default=50.0)
    ap.add_argument("--probe-repeats", type=int, default=3, help="runs of the I3ResNet-152 measurement (max taken)")
    ap.add_argument("--measurements", help="pickle file: reuse its measurements if it exists, else write them")
    args = ap.parse_args()

    from CTCounterfactualLib import memory_estimate as me

    saved = Path(args.measurements) if args.measurements else None
    probes, results = pickle.loads(saved.read_bytes()) if saved is not None and saved.is_file() else ([], [])
    fresh = not results
    if not isinstance(probes, list) or not probes or "largest" not in probes[0]:  # older files: measure again
        probes, fresh = [_in_child(classifier_probe) for _ in range(args.probe_repeats)], True
    for pr in probes:
        print(
            f"I3ResNet-152 [1, 1, 64, 64, 16] forward + backward: peak {pr['peak'] / MIB:.1f} MiB; probe saved "
            f"{pr['saved'] / MIB:.1f} MiB, largest {pr['largest'] / MIB:.1f} MiB"
        )
    for c in CASES if not results else []:
        r = _in_child(run_case, c)
        print(f"[fit] {c}: peak {r['peak'] / MIB:.1f} MiB", file=sys.stderr)
        results.append(r)
    if saved is not None and fresh:
        saved.write_bytes(pickle.dumps((probes, results)))

    from CTCounterfactualLib.method.memory_estimate import profile_models

    profiles = {}
    for r in results:
        c = r["case"]
        if (c.models, c.hw) not in profiles:
            ae, clf, _ = _models(c.models)
            profiles[c.models, c.hw] = profile_models(ae, clf, (c.hw, c.hw))
    base = args.base_mib * MIB
    measured = np.array([r["peak"] for r in results], dtype=float)
    n_v, n_f, k_d = np.meshgrid(
        np.arange(0.0, 20.01, 0.25), np.arange(0.0, 8.01, 0.25), np.arange(0.05, 3.01, 0.05), indexing="ij"
    )
    best = None
    for a in np.arange(0.0, 6.01, 1.0):
        # K_CLASSIFIER: the largest measured peak over the probe's estimate (the measurement is noisy)
        k_clf = max(pr["peak"] / (pr["saved"] + a * pr["largest"]) for pr in probes)
        regs = [regressors(r["case"], profiles[r["case"].models, r["case"].hw], a) for r in results]
        vol, frame, dec, clf, lat = (np.array([g[k] for g in regs], dtype=float) for k in regs[0])
        est = base + n_v[..., None] * vol + lat
        est = est + np.maximum(np.maximum(k_clf * clf, k_d[..., None] * dec), n_f[..., None] * frame)
        log_ratio = np.log(est / measured)
        worst = np.where(log_ratio < 0, -UNDER_WEIGHT * log_ratio, log_ratio).max(axis=-1)
        i = np.unravel_index(np.argmin(worst), worst.shape)
        if best is None or worst[i] < best[0]:
            best = (worst[i], a, k_clf, float(n_v[i]), float(n_f[i]), float(k_d[i]), est[i])
    worst, a, k_clf, n_vol, n_frame, k_dec, fitted = best
    ratios = fitted / measured
    print(
        f"fitted: N_VOLUME {n_vol:.2f}, N_FRAME {n_frame:.2f}, K_DECODER {k_dec:.2f}, K_CLASSIFIER {k_clf:.2f}, "
        f"LARGEST_FACTOR {a:.0f} (estimate / measured {ratios.min():.2f} to {ratios.max():.2f}); current: "
        f"N_VOLUME {me.N_VOLUME}, N_FRAME {me.N_FRAME}, K_DECODER {me.K_DECODER}, K_CLASSIFIER {me.K_CLASSIFIER}, "
        f"LARGEST_FACTOR {me.LARGEST_FACTOR}"
    )
    print()
    print(
        "| models | mode | slices x H x W | batch | measured (MiB) | fitted est. (MiB) "
        "| current est. (MiB) | current / measured | peak phase |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    for r, f in zip(results, fitted, strict=True):
        c = r["case"]
        cur = me.estimate_peak(profiles[c.models, c.hw], (c.depth, c.hw, c.hw), (0, c.depth), c.mode, c.batch, c.chunk)
        print(
            f"| {c.models} | {c.mode} | {c.depth} x {c.hw} x {c.hw} | {c.batch} | {r['peak'] / MIB:.1f} "
            f"| {f / MIB:.1f} | {cur.total_bytes / MIB:.1f} | {cur.total_bytes / r['peak']:.2f} "
            f"| {cur.peak_phase} |"
        )


if __name__ == "__main__":
    main()
