"""Effusion classifier data on real chest CT: the same scans with and without simulated fluid, plausibly augmented."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from CTCounterfactualLib.data.demo_ct import ChestCT
from CTCounterfactualLib.data.effusion import simulate_effusion
from CTCounterfactualLib.method.latent_ops import reconstruct
from CTCounterfactualLib.models.autoencoder import SliceAutoencoder
from CTCounterfactualLib.models.conventions import VolumeConvention


def effusion_pairs(
    scans: list[ChestCT],
    seeds: Iterable[int],
    conv: VolumeConvention,
    ae: SliceAutoencoder | None = None,
    recon_every: int = 2,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each seed, one scan (round robin) with effusion ``seed`` (label 1) and without it (label 0).

    Returns classifier inputs, labels and the fluid masks on the classifier's grid (fraction of
    fluid per voxel). Every ``recon_every``-th pair goes through ``ae`` first (both members), so the
    classifier also sees the reconstructions a counterfactual search asks it about.
    """
    xs, ys, ms = [], [], []
    for i, seed in enumerate(seeds):
        scan = scans[i % len(scans)]
        sim = simulate_effusion(scan.hu, scan.geometry, seed, scan.labels)
        mask = torch.as_tensor(sim.fraction)[None]
        if conv.size:
            mask = F.interpolate(mask, size=(conv.size, conv.size), mode="area")
        for hu, label in ((sim.hu, 1.0), (scan.hu, 0.0)):
            t = torch.as_tensor(hu, dtype=torch.float32)
            if ae is not None and i % recon_every == 0:
                t = ae.window.to_hu(reconstruct(ae, ae.window.to_unit(t).clamp(0, 1)).clamp(0, 1))
            xs.append(conv.to_model(t.clamp(-1000, 1000))[0])
            ys.append(label)
            ms.append(mask * label)
    # scans differ in slice count: extend the shorter ones at the cranial end (LPS: the last slices) by repeating
    # their top slice, which keeps every slice of every scan (cropping cut the lungs off an abdomen CT)
    depth = max(x.shape[1] for x in xs)
    return (
        torch.stack([_extend_cranially(x, depth, "replicate") for x in xs]),
        torch.tensor(ys),
        torch.stack([_extend_cranially(m, depth, "constant") for m in ms]),
    )


def _extend_cranially(t: torch.Tensor, depth: int, mode: str) -> torch.Tensor:
    """(C, D, H, W) -> (C, depth, H, W), new slices after the last one."""
    extra = depth - t.shape[1]
    return F.pad(t[None], (0, 0, 0, 0, 0, extra), mode=mode)[0] if extra else t


def plausible_volume_affine(
    x: torch.Tensor, g: torch.Generator, rot_deg: float = 8, zoom: float = 0.15
) -> torch.Tensor:
    """(B, C, D, H, W): one random small in-plane rotation / zoom / shift per volume (no left-right flip)."""
    b, c, d, h, w = x.shape
    u = torch.rand(b, 4, generator=g) * 2 - 1
    a = u[:, 0] * rot_deg * torch.pi / 180
    z = 1 + u[:, 1] * zoom
    cos, sin = torch.cos(a) / z, torch.sin(a) / z
    theta = torch.stack([torch.stack([cos, -sin, u[:, 2] * 0.1], 1), torch.stack([sin, cos, u[:, 3] * 0.1], 1)], 1)
    slices = x.permute(0, 2, 1, 3, 4).reshape(b * d, c, h, w)
    grid = F.affine_grid(theta.repeat_interleave(d, 0), [b * d, c, h, w], align_corners=False)
    low = x.amin(dim=(0, 2, 3, 4)).reshape(1, c, 1, 1)  # outside the scan: air (and no fluid)
    out = F.grid_sample(slices - low, grid, align_corners=False) + low
    return out.reshape(b, d, c, h, w).permute(0, 2, 1, 3, 4)


def scanner_augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Training augmentation for one training CT to stand for many: (B, C, D, H, W), channel 0 the CT in model
    units (HU / 1000), further channels masks. Left/right flip (the label does not depend on the side), a wider
    affine (patients and fields of view differ: zoom +-25 %), and per volume an intensity offset (+-30 HU),
    gain (+-5 %) and noise (0-40 HU) on the CT channel (scanners and kernels differ)."""
    b = x.shape[0]
    flip = torch.rand(b, generator=g) < 0.5
    x = torch.where(flip.view(b, 1, 1, 1, 1), torch.flip(x, dims=(-1,)), x)
    x = plausible_volume_affine(x, g, zoom=0.25)
    u = torch.rand(b, 3, generator=g).view(b, 3, 1, 1, 1)
    ct = x[:, 0]
    ct = ct * (1 + (u[:, 0] * 2 - 1) * 0.05) + (u[:, 1] * 2 - 1) * 0.03
    ct = ct + torch.randn(ct.shape, generator=g) * u[:, 2] * 0.04
    return torch.cat([ct[:, None], x[:, 1:]], 1)


def augmented_scores(net: torch.nn.Module, x: torch.Tensor, seed: int) -> np.ndarray:
    """Sigmoid scores of ``x`` (N, C, D, H, W), each volume under its own plausible affine from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return np.concatenate(
            [torch.sigmoid(net(plausible_volume_affine(x[i : i + 1], g))[:, 0]).numpy() for i in range(len(x))]
        )
