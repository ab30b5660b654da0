"""Benchmark at the paper's model sizes: taming's f16 VQ-GAN at 256 x 256 and Merlin's I3ResNet-152, random weights.

Models
------
* VQ-GAN: taming's ``vqgan_imagenet_f16_1024`` ddconfig with one input/output channel (the published CT
  model's ``ct2_vqgan256`` is this architecture on 1-channel CT slices): ch 128, ch_mult (1, 1, 2, 2, 4),
  2 res blocks, attention at 16, z 256 channels at 16 x 16, 1024 x 256 codebook - ``VQGANConfig()``'s
  defaults (about 72 M parameters), fed 256 x 256 slices.
* Classifier: Merlin's I3ResNet-152 (``MerlinI3ResNet()``, 1692 phecode outputs), input 224 x 224 x D.

What it measures (device: ``--device cpu`` or ``cuda``)
------------------------------------------------------
Seconds per slice for encode, decode and the decoder's vector-Jacobian product (VJP; what the fast path's
exact latent gradient streams, ``--batch`` slices at a time) and their peak memory; Merlin's forward and
forward+backward on D slices. From those, per 10-slice chunk with S search evaluations (steps + sweep
frames) on a D-slice CT: the fast path (decode the chunk's 10 slices per step; one shared gradient for the
whole volume: one classifier backward + D slice VJPs, its share per chunk = 1/(D/10)) and the faithful one
(decode all D slices per step; per chunk a gradient through the chunk's 10-slice decoder graph). Peak
memory: the decoder VJP for 1 and 2 slices at once, per slice the difference, and how many slices of decoder
gradient fit in 32 GiB (paper: 10-12 slices per 32 GB; ~30 s per 10-slice chunk on a V100).

CPU peak memory is the process's resident high-water mark above the level before each step (reset
through ``/proc/self/clear_refs``, Linux); CUDA's is ``torch.cuda.max_memory_allocated`` above the start.
Run: ``python bench/bench_paper_size.py`` (CPU, a few minutes: 2 slices, Merlin on 16 slices) or
``bench/gpu.sh`` (CUDA, the paper's D = 160).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from CTCounterfactualLib.models.merlin import MerlinI3ResNet
from CTCounterfactualLib.models.vqgan import VQGANConfig, VQModel

GIB = 2**30


class Peak:
    """Peak memory above the level at ``start`` (CUDA allocator or the CPU resident high-water mark)."""

    def __init__(self, device: torch.device):
        self.device = device

    def _rss(self, key: str) -> int:
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            with open("/proc/self/clear_refs", "w", encoding="utf-8") as f:
                f.write("5")
            self.base = self._rss("VmRSS")

    def bytes(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - self.base
        return self._rss("VmHWM") - self.base


def timed(device: torch.device, fn, repeat: int = 1) -> tuple[float, int]:
    """(seconds per call, peak bytes) of ``fn``, after one warm-up call."""
    fn()
    peak = Peak(device)
    peak.start()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeat, peak.bytes()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--batch", type=int, default=2, help="slices per autoencoder call (default 2)")
    ap.add_argument("--merlin-slices", type=int, default=16, help="D for the Merlin timings (default 16; paper 160)")
    ap.add_argument("--volume-slices", type=int, default=160, help="D of the CT in the per-chunk estimate")
    ap.add_argument("--evaluations", type=int, default=30, help="S: search steps + sweep frames per chunk")
    ap.add_argument("--skip-merlin", action="store_true")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    cfg = VQGANConfig()
    vq = VQModel(cfg).eval().to(device)
    for p in vq.parameters():
        p.requires_grad_(False)
    n_par = sum(p.numel() for p in vq.parameters()) / 1e6
    b = args.batch
    x = torch.rand(b, 1, 256, 256, device=device) * 2 - 1
    with torch.no_grad():
        z = vq.encode(x)
    print(f"# Paper-size models on {device} ({torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f})\n")
    print(f"VQ-GAN: taming f16 (VQGANConfig defaults), {n_par:.1f} M parameters, latent {tuple(z.shape[1:])}\n")
    rows = []

    def enc():
        with torch.no_grad():
            vq.encode(x)

    def dec():
        with torch.no_grad():
            vq.decode(z)

    def vjp(n: int):
        zz = z[:n].detach().requires_grad_(True)
        v = torch.randn(n, 1, 256, 256, device=device)

        def run():
            with torch.enable_grad():
                (g,) = torch.autograd.grad((vq.decode(zz) * v).sum(), zz)
            return g

        return run

    t_enc, m_enc = timed(device, enc)
    t_dec, m_dec = timed(device, dec)
    t_vjp, m_vjp = timed(device, vjp(b))
    _, m_vjp1 = timed(device, vjp(1))
    per_slice_vjp_mem = max(m_vjp - m_vjp1, 1) / max(b - 1, 1)
    rows += [
        ("encode", t_enc / b, m_enc),
        ("decode", t_dec / b, m_dec),
        ("decoder VJP", t_vjp / b, m_vjp),
        ("decoder VJP, 1 slice", None, m_vjp1),
    ]
    print("| VQ-GAN step | s / slice | peak MiB (batch) |\n|---|---|---|")
    for name, t, m in rows:
        print(f"| {name} | {'-' if t is None else f'{t:.3f}'} | {m / 2**20:.0f} |")
    print(
        f"\nDecoder VJP memory per extra slice: {per_slice_vjp_mem / 2**20:.0f} MiB, so about "
        f"{int(32 * GIB // per_slice_vjp_mem)} slices of decoder gradient per 32 GiB (paper: 10-12 per 32 GB)."
    )
    D, S = args.volume_slices, args.evaluations
    t_fwd = t_bwd = 0.0
    if not args.skip_merlin:
        merlin = MerlinI3ResNet().eval().to(device)
        for p in merlin.parameters():
            p.requires_grad_(False)
        d = args.merlin_slices
        vol = torch.rand(1, 1, 224, 224, d, device=device)

        def fwd():
            with torch.no_grad():
                merlin(vol)

        def fwd_bwd():
            v = vol.detach().requires_grad_(True)
            with torch.enable_grad():
                torch.autograd.grad(merlin(v)[0, 0], v)

        t_f, m_f = timed(device, fwd)
        t_fb, m_fb = timed(device, fwd_bwd)
        print(
            f"\nMerlin I3ResNet-152 on 224 x 224 x {d}: forward {t_f:.2f} s ({m_f / 2**20:.0f} MiB), "
            f"forward+backward {t_fb:.2f} s ({m_fb / 2**20:.0f} MiB, checkpointed blocks)"
        )
        t_fwd, t_bwd = t_f * D / d, t_fb * D / d  # linear in D (a convolutional net)
    chunks = D / 10
    fast_grad = t_bwd + D * t_vjp / b
    fast = S * (10 * t_dec / b + t_fwd) + fast_grad / chunks
    faithful_grad = D * t_dec / b + 10 * (t_dec + t_vjp) / b + t_bwd
    faithful = faithful_grad + S * (D * t_dec / b + t_fwd)
    print(
        f"\nPer 10-slice chunk of a {D}-slice CT, S = {S} evaluations (Merlin times scaled to D linearly):\n\n"
        "| path | s per chunk | of which gradient | faithful / fast |\n|---|---|---|---|\n"
        f"| fast | {fast:.0f} | {fast_grad / chunks:.0f} (shared, 1/{chunks:.0f} of it) | |\n"
        f"| faithful | {faithful:.0f} | {faithful_grad:.0f} | {faithful / fast:.1f}x |\n"
        "\nPaper: about 30 s per 10-slice chunk on a V100 (its faithful path)."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
