"""``ctcf train-autoencoder``: train the slice VQ-GAN on CT slices, the paper's recipe scaled down.

Slices are windowed to [0, 1] (-1000..1000 HU), halved in-plane, randomly cropped; the loss is L1
reconstruction + the VQ codebook/commitment terms + a hinge adversarial term from a small patch
discriminator after a warm-up (no LPIPS: it needs downloaded VGG weights).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from CTCounterfactualLib.data.phantom import PhantomSpec, make_phantom
from CTCounterfactualLib.data.volume_io import read_volume
from CTCounterfactualLib.models.autoencoder import SliceAutoencoder
from CTCounterfactualLib.models.conventions import HUWindow, SliceConvention
from CTCounterfactualLib.models.vqgan import VQGANConfig, VQModel
from CTCounterfactualLib.training.ae_grids import AE_LEARNING_RATE, DEFAULT_REAL_GRID

# decoder trained to output [-1, 1] like its input: output map (x + 1) / 2
DEMO_CONVENTION = SliceConvention(
    window=HUWindow(-1000.0, 1000.0),
    size=64,
    rot90_k=0,
    flip=False,
    input_scale=2.0,
    input_offset=-1.0,
    output_scale=0.5,
    output_offset=0.5,
)


# the real-anatomy VQ-GAN (its grids: ae_grids.py)
REAL_CONVENTION = replace(DEMO_CONVENTION, size=DEFAULT_REAL_GRID)


def demo_vqgan_config(resolution: int = 64) -> VQGANConfig:
    return VQGANConfig(
        ch=32,
        ch_mult=(1, 2, 2),
        num_res_blocks=1,
        attn_resolutions=(),
        resolution=resolution,
        in_channels=1,
        out_ch=1,
        z_channels=8,
        embed_dim=8,
        n_embed=512,
        norm_groups=8,
    )


@dataclass
class AETrainConfig:
    steps: int = 1500
    batch: int = 16
    crop: int = 48
    lr: float = AE_LEARNING_RATE
    adv_start: int = 600
    adv_weight: float = 0.05
    beta: float = 0.25
    seed: int = 0
    # with init weights: seed the codebook afresh from the new slices' encoder outputs (a phantom model's
    # codes do not fit real anatomy) instead of keeping init's; without init it is always seeded
    reseed_codebook: bool = False
    # in-plane augmentation that keeps anatomy plausible: small rotation, zoom and shift (no
    # left-right flip, which would put the heart on the right)
    max_minutes: float | None = None  # stop early (and say so in the sidecar) when this wall time is spent
    augment: bool = False
    max_rotation_deg: float = 8.0
    max_zoom: float = 0.15
    max_shift: float = 0.06


def _to_model_size(hu_slices: np.ndarray, size: int) -> torch.Tensor:
    """(N, H, W) HU -> (N, 1, size, size) in [0, 1]."""
    x = torch.as_tensor(hu_slices, dtype=torch.float32)[:, None]
    x = ((x + 1000.0) / 2000.0).clamp(0, 1)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def lps_array(path: str | os.PathLike) -> np.ndarray:
    """A CT's HU array reoriented to LPS (row 0 anterior, column 0 right), as the bundled demo CT is stored."""
    import SimpleITK as sitk

    from CTCounterfactualLib.data.volume_io import image_from_array

    vol = read_volume(path)
    return sitk.GetArrayFromImage(sitk.DICOMOrient(image_from_array(vol.array, vol.geometry), "LPS"))


def real_ct_slices(paths: Iterable[str | os.PathLike], size: int) -> torch.Tensor:
    """All axial slices of real CTs (LPS orientation), windowed to [0, 1] and resized to ``size``."""
    return torch.cat([_to_model_size(lps_array(p), size) for p in paths])


def collect_slices(
    phantom_seeds: Iterable[int],
    volume_paths: Iterable[str | os.PathLike],
    size: int,
    phantom_kwargs: dict | None = None,
) -> torch.Tensor:
    """Training slices from phantoms (effusion on every other one) and real CT volumes."""
    parts = []
    for i, seed in enumerate(phantom_seeds):
        spec = PhantomSpec(
            seed=seed, effusion=("none", "right", "left", "both")[i % 4], nodules=i % 3, **(phantom_kwargs or {})
        )
        parts.append(_to_model_size(make_phantom(spec).hu, size))
    for path in volume_paths:
        parts.append(_to_model_size(read_volume(path).array, size))
    return torch.cat(parts)


class PatchDiscriminator(nn.Module):
    def __init__(self, ch: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, ch, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ch, 2 * ch, 4, 2, 1),
            nn.GroupNorm(8, 2 * ch),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * ch, 1, 3, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def plausible_affine(x: torch.Tensor, tc: AETrainConfig, g: torch.Generator) -> torch.Tensor:
    """Random small rotation / zoom / shift of (B, 1, S, S) slices in [0, 1]; outside the slice is air (0)."""
    b = x.shape[0]
    u = torch.rand(b, 4, generator=g) * 2 - 1
    angle = u[:, 0] * tc.max_rotation_deg * torch.pi / 180
    zoom = 1 + u[:, 1] * tc.max_zoom
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [
            torch.stack([cos, -sin, u[:, 2] * tc.max_shift * 2], 1),
            torch.stack([sin, cos, u[:, 3] * tc.max_shift * 2], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _quantize_st(model: VQModel, h: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Straight-through quantization with codebook + commitment loss (training only)."""
    zq = model.quantize(h)
    loss = F.mse_loss(zq, h.detach()) + beta * F.mse_loss(h, zq.detach())
    return h + (zq - h).detach(), loss


def train_autoencoder(
    slices: torch.Tensor,
    cfg: VQGANConfig,
    tc: AETrainConfig,
    log: Callable[[int, dict], None] | None = None,
    init: dict | None = None,
) -> VQModel:
    """Train a VQ-GAN on (N, 1, S, S) [0, 1] slices, from ``init`` weights if given; returns it (eval mode)."""
    g = torch.Generator().manual_seed(tc.seed)
    torch.manual_seed(tc.seed)
    model = VQModel(cfg)
    if init is not None:
        model.load_state_dict(init)
    disc = PatchDiscriminator()
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(disc.parameters(), lr=tc.lr, betas=(0.5, 0.9))
    n, s = slices.shape[0], slices.shape[-1]

    def batch() -> torch.Tensor:
        idx = torch.randint(0, n, (tc.batch,), generator=g)
        oy, ox = (int(v) for v in torch.randint(0, s - tc.crop + 1, (2,), generator=g))
        x = slices[idx]
        if tc.augment:
            x = plausible_affine(x, tc, g)
        x = x[:, :, oy : oy + tc.crop, ox : ox + tc.crop]
        if not tc.augment and torch.rand(1, generator=g).item() < 0.5:  # phantoms are symmetric
            x = torch.flip(x, dims=(-1,))
        return x * 2 - 1

    if init is None or tc.reseed_codebook:  # codebook starts on encoder outputs, so no code is dead from the start
        with torch.no_grad():
            h = model.quant_conv(model.encoder(batch())).permute(0, 2, 3, 1).reshape(-1, cfg.embed_dim)
            model.quantize.embedding.weight.copy_(h[torch.randint(0, h.shape[0], (cfg.n_embed,), generator=g)])
    model.train()
    import time

    start = time.monotonic()
    for step in range(tc.steps):
        if tc.max_minutes is not None and time.monotonic() - start > 60 * tc.max_minutes:
            model.steps_done = step
            break
        x = batch()
        zq, vq_loss = _quantize_st(model, model.quant_conv(model.encoder(x)), tc.beta)
        rec = model.decode(zq)
        rec_loss = (x - rec).abs().mean()
        loss = rec_loss + vq_loss
        adv = step >= tc.adv_start
        if adv:
            loss = loss - tc.adv_weight * disc(rec).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if adv or tc.adv_start - 100 <= step < tc.adv_start < tc.steps:  # discriminator warm-up
            d_loss = F.relu(1 - disc(x)).mean() + F.relu(1 + disc(rec.detach())).mean()
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
        if log is not None and (step % 20 == 0 or step == tc.steps - 1):
            log(step, {"l1": float(rec_loss.detach()), "vq": float(vq_loss.detach())})
    else:
        model.steps_done = tc.steps
    return model.eval()


def save_autoencoder(model: VQModel, convention: SliceConvention, path: str | os.PathLike, info: dict) -> Path:
    """Weights (state dict .pt) + sidecar JSON with architecture, convention and how it was trained."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    meta = {
        "name": path.stem,
        "architecture": model.config.to_dict(),
        "convention": convention.to_dict(),
        "training": info,
    }
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return path


def reconstruction_fit_hu(ae: SliceAutoencoder, hu: np.ndarray, body: np.ndarray, batch: int = 16) -> dict:
    """MAE (HU) of D(E(x)) inside ``body`` and the slope / intercept of a linear fit of recon on input."""
    from CTCounterfactualLib.method.latent_ops import reconstruct

    unit = ae.window.to_unit(torch.as_tensor(hu, dtype=torch.float32)).clamp(0, 1)
    rec = ae.window.to_hu(reconstruct(ae, unit, batch).clamp(0, 1)).numpy()[body]
    inp = ae.window.to_hu(unit).numpy()[body]
    slope, intercept = np.polyfit(inp, rec, 1)
    return {"mae_hu_body": float(np.abs(rec - inp).mean()), "slope": float(slope), "intercept_hu": float(intercept)}


def reconstruction_mae_hu(ae: SliceAutoencoder, hu: np.ndarray, body: np.ndarray, batch: int = 16) -> float:
    """Mean absolute HU error of D(E(x)) inside ``body`` (HU clipped to the window on both sides)."""
    from CTCounterfactualLib.method.latent_ops import reconstruct

    t = torch.as_tensor(hu, dtype=torch.float32)
    unit = ae.window.to_unit(t).clamp(0, 1)
    rec = reconstruct(ae, unit, batch)
    diff = (ae.window.to_hu(rec.clamp(0, 1)) - ae.window.to_hu(unit)).abs().numpy()
    return float(diff[body].mean())
