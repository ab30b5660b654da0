"""Training of the effusion classifier on real patients: pairs of a simulated effusion and its patient's CT without
fluid, each under its own plausible acquisition, with the evidence map supervised by the fluid mask."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from CTCounterfactualLib.training.acquisition import draw_acquisition, resample_thickness, scanner_batch
from CTCounterfactualLib.training.classifier import EffusionNet
from CTCounterfactualLib.training.effusion_data import FluidSample, Patient

POSITIVE_KEPT = 0.3  # a crop that keeps this share of the fluid is still an effusion
NEGATIVE_KEPT = 0.02  # one that keeps less is a CT without (enough) fluid
MAX_TRAIN_DEPTH = 96  # thin-slice batches keep a window of this many slices (their cost grows with depth)


@dataclass
class EffusionTrainConfig:
    epochs: int = 24
    pairs_per_batch: int = 4
    lr: float = 1e-3
    label_smoothing: float = 0.1
    seed: int = 0
    aux_weight: float = 1.0
    aux_pos_weight: float = 10.0  # fluid is ~1 % of the evidence map's locations
    coverage_share: float = 0.35


@dataclass
class Batch:
    x: torch.Tensor  # (B, 1, D, H, W)
    masks: torch.Tensor  # (B, 1, D, H, W)
    labels: torch.Tensor  # (B,)
    weights: torch.Tensor  # (B,): 0 for a crop that keeps only part of its fluid (neither class)


def _window(depth: int, n: int, anchor: str, g: torch.Generator) -> tuple[int, int]:
    if anchor == "lower":
        return 0, n
    if anchor == "upper":
        return depth - n, depth
    a = int(torch.randint(0, depth - n + 1, (1,), generator=g))
    return a, a + n


def make_batch(volumes: list[tuple[torch.Tensor, torch.Tensor]], g: torch.Generator, coverage_share: float) -> Batch:
    """(CT, mask) pairs at 5 mm -> one batch: one slice thickness and coverage for all (they share a depth), the
    in-plane acquisition per volume; labels from the fluid each crop keeps."""
    first = draw_acquisition(g, coverage_share)
    thick = [resample_thickness(torch.cat([x, m]), first.thickness_mm) for x, m in volumes]
    depth = min(v.shape[1] for v in thick)
    anchor, share = first.coverage if first.coverage else ("any", 1.0)
    n = min(MAX_TRAIN_DEPTH, max(2, round(depth * share)))
    xs, ys, ws = [], [], []
    for v in thick:
        a, b = _window(v.shape[1], n, anchor, g)
        total, kept = float(v[1].sum()), float(v[1, a:b].sum())
        xs.append(v[:, a:b])
        keep = kept / total if total > 0 else 0.0
        ys.append(1.0 if keep >= POSITIVE_KEPT else 0.0)
        ws.append(1.0 if keep >= POSITIVE_KEPT or keep <= NEGATIVE_KEPT else 0.0)
    t = scanner_batch(torch.stack(xs), [draw_acquisition(g, coverage_share) for _ in xs], g)
    t = t.contiguous(memory_format=torch.channels_last_3d)  # 2x faster 3D convolutions on CPU
    return Batch(t[:, :1], t[:, 1:], torch.tensor(ys), torch.tensor(ws))


def _loss(net: EffusionNet, b: Batch, cfg: EffusionTrainConfig) -> torch.Tensor:
    evidence = net.features(b.x)
    logit = net.pooled(evidence)[:, 0]
    # label smoothing keeps the sigmoid off saturation, where its gradient (what Latent Shift follows) vanishes
    target = b.labels * (1 - cfg.label_smoothing) + cfg.label_smoothing / 2
    cls = nn.functional.binary_cross_entropy_with_logits(logit, target, weight=b.weights)
    local = (nn.functional.adaptive_max_pool3d(b.masks, evidence.shape[2:]) > 0.25).float()
    aux = nn.functional.binary_cross_entropy_with_logits(
        evidence, local, pos_weight=torch.tensor(cfg.aux_pos_weight)
    )
    return cls + cfg.aux_weight * aux


def train_effusion_net(
    samples: list[FluidSample],
    patients: dict[str, Patient],
    cfg: EffusionTrainConfig,
    log: Callable[[str], None] | None = None,
) -> EffusionNet:
    """Every epoch, each effusion once, beside its own patient's CT without fluid; returns the net in eval mode."""
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    net = EffusionNet().to(memory_format=torch.channels_last_3d)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    t0 = time.monotonic()
    for epoch in range(cfg.epochs):
        net.train()
        order = torch.randperm(len(samples), generator=g).tolist()
        total = 0.0
        for i in range(0, len(order), cfg.pairs_per_batch):
            volumes = []
            for j in order[i : i + cfg.pairs_per_batch]:
                s = samples[j]
                neg = patients[s.patient].x
                volumes += [(s.x, s.mask), (neg, torch.zeros_like(neg))]
            loss = _loss(net, make_batch(volumes, g, cfg.coverage_share), cfg)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach())
        if log is not None:
            batches = -(-len(order) // cfg.pairs_per_batch)
            log(f"epoch {epoch}: loss {total / batches:.4f} ({time.monotonic() - t0:.0f} s)")
    return net.to(memory_format=torch.contiguous_format).eval()
