"""``ctcf train-autoencoder``: train the slice VQ-GAN on CT slices, the paper's recipe scaled down.

Slices are windowed to [0, 1] (-1000..1000 HU), halved in-plane, randomly cropped; the loss is L1
reconstruction + the VQ codebook/commitment terms + a hinge adversarial term from a small patch
discriminator after a warm-up (no LPIPS: it needs downloaded VGG weights).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
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


def demo_vqgan_config() -> VQGANConfig:
    return VQGANConfig(
        ch=32,
        ch_mult=(1, 2, 2),
        num_res_blocks=1,
        attn_resolutions=(),
        resolution=64,
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
    lr: float = 2e-4
    adv_start: int = 600
    adv_weight: float = 0.05
    beta: float = 0.25
    seed: int = 0


def _to_model_size(hu_slices: np.ndarray, size: int) -> torch.Tensor:
    """(N, H, W) HU -> (N, 1, size, size) in [0, 1]."""
    x = torch.as_tensor(hu_slices, dtype=torch.float32)[:, None]
    x = ((x + 1000.0) / 2000.0).clamp(0, 1)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


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


def _quantize_st(model: VQModel, h: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Straight-through quantization with codebook + commitment loss (training only)."""
    zq = model.quantize(h)
    loss = F.mse_loss(zq, h.detach()) + beta * F.mse_loss(h, zq.detach())
    return h + (zq - h).detach(), loss


def train_autoencoder(
    slices: torch.Tensor, cfg: VQGANConfig, tc: AETrainConfig, log: Callable[[int, dict], None] | None = None
) -> VQModel:
    """Train a VQ-GAN on (N, 1, S, S) [0, 1] slices; returns the model (eval mode)."""
    g = torch.Generator().manual_seed(tc.seed)
    torch.manual_seed(tc.seed)
    model = VQModel(cfg)
    disc = PatchDiscriminator()
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(disc.parameters(), lr=tc.lr, betas=(0.5, 0.9))
    n, s = slices.shape[0], slices.shape[-1]

    def batch() -> torch.Tensor:
        idx = torch.randint(0, n, (tc.batch,), generator=g)
        oy, ox = (int(v) for v in torch.randint(0, s - tc.crop + 1, (2,), generator=g))
        x = slices[idx, :, oy : oy + tc.crop, ox : ox + tc.crop]
        if torch.rand(1, generator=g).item() < 0.5:
            x = torch.flip(x, dims=(-1,))
        return x * 2 - 1

    with torch.no_grad():  # codebook starts on encoder outputs, so no code is dead from the start
        h = model.quant_conv(model.encoder(batch())).permute(0, 2, 3, 1).reshape(-1, cfg.embed_dim)
        model.quantize.embedding.weight.copy_(h[torch.randint(0, h.shape[0], (cfg.n_embed,), generator=g)])
    model.train()
    for step in range(tc.steps):
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
        if adv or step >= tc.adv_start - 100:
            d_loss = F.relu(1 - disc(x)).mean() + F.relu(1 + disc(rec.detach())).mean()
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
        if log is not None and (step % 100 == 0 or step == tc.steps - 1):
            log(step, {"l1": float(rec_loss.detach()), "vq": float(vq_loss.detach())})
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
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    return path


def reconstruction_mae_hu(ae: SliceAutoencoder, hu: np.ndarray, body: np.ndarray, batch: int = 16) -> float:
    """Mean absolute HU error of D(E(x)) inside ``body`` (HU clipped to the window on both sides)."""
    from CTCounterfactualLib.method.latent_ops import reconstruct

    t = torch.as_tensor(hu, dtype=torch.float32)
    unit = ae.window.to_unit(t).clamp(0, 1)
    rec = reconstruct(ae, unit, batch)
    diff = (ae.window.to_hu(rec.clamp(0, 1)) - ae.window.to_hu(unit)).abs().numpy()
    return float(diff[body].mean())
