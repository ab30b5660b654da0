"""Training of the effusion classifier on real patients: pairs of a simulated effusion and its patient's CT without
fluid, each under its own plausible acquisition, with the evidence map supervised by the fluid mask."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from CTCounterfactualLib.training.acquisition import draw_acquisition, resample_thickness, scanner_batch
from CTCounterfactualLib.training.classifier import EffusionNet, hu_window_in_model_units
from CTCounterfactualLib.training.effusion_data import FluidSample, Patient

POSITIVE_KEPT = 0.3  # a crop that keeps this share of the fluid is still an effusion
NEGATIVE_KEPT = 0.02  # one that keeps less is a CT without (enough) fluid
MAX_TRAIN_DEPTH = 56  # thin-slice batches keep a window of this many slices (their cost grows with depth)


@dataclass
class EffusionTrainConfig:
    epochs: int = 24
    pairs_per_batch: int = 4
    lr: float = 2e-3  # cosine-annealed to lr / 20 over the run
    label_smoothing: float = 0.1
    seed: int = 0
    aux_weight: float = 1.0
    aux_pos_weight: float = 10.0  # fluid is ~1 % of the evidence map's locations
    coverage_share: float = 0.35
    confounder_share: float = 0.5  # of the negatives, a CT with a lung mass or dependent atelectasis instead
    width: int = 8  # EffusionNet's first-layer channels
    top_k: int = 8  # evidence locations the logit averages (few: a 20 ml effusion covers only a few)
    windows: tuple = ()  # HU windows the net adds as input channels (EffusionNet's windows, here in HU)


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


def _loss(net: EffusionNet, b: Batch, cfg: EffusionTrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(classification loss, evidence-map loss)."""
    evidence = net.features(net.windowed(b.x))
    logit = net.pooled(evidence)[:, 0]
    # label smoothing keeps the sigmoid off saturation, where its gradient (what Latent Shift follows) vanishes
    target = b.labels * (1 - cfg.label_smoothing) + cfg.label_smoothing / 2
    cls = nn.functional.binary_cross_entropy_with_logits(logit, target, weight=b.weights)
    local = (nn.functional.adaptive_max_pool3d(b.masks, evidence.shape[2:]) > 0.25).float()
    aux = nn.functional.binary_cross_entropy_with_logits(evidence, local, pos_weight=torch.tensor(cfg.aux_pos_weight))
    return cls, aux


def train_effusion_net(
    samples: list[FluidSample],
    patients: dict[str, Patient],
    cfg: EffusionTrainConfig,
    log: Callable[[str], None] | None = None,
    monitor: Callable[[int, EffusionNet], str] | None = None,
) -> EffusionNet:
    """Every epoch, each effusion once, beside its own patient's CT without fluid (or one of its confounders);
    returns the net in eval mode. ``monitor(epoch, net)`` (net in eval mode) adds a line to the log every 5th epoch."""
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    windows = tuple(hu_window_in_model_units(w) for w in cfg.windows)
    net = EffusionNet(width=cfg.width, top_k=cfg.top_k, windows=windows).to(memory_format=torch.channels_last_3d)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    steps = cfg.epochs * -(-len(samples) // cfg.pairs_per_batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=cfg.lr / 20)
    t0 = time.monotonic()
    for epoch in range(cfg.epochs):
        net.train()
        order = torch.randperm(len(samples), generator=g).tolist()
        totals = torch.zeros(2)
        for i in range(0, len(order), cfg.pairs_per_batch):
            volumes = []
            for j in order[i : i + cfg.pairs_per_batch]:
                s = samples[j]
                volumes += [(s.x, s.mask), _negative(patients[s.patient], cfg.confounder_share, g)]
            cls, aux = _loss(net, make_batch(volumes, g, cfg.coverage_share), cfg)
            opt.zero_grad()
            (cls + cfg.aux_weight * aux).backward()
            opt.step()
            sched.step()
            totals += torch.tensor([float(cls.detach()), float(aux.detach())])
        if log is not None:
            c, a = (totals / -(-len(order) // cfg.pairs_per_batch)).tolist()
            log(f"epoch {epoch}: classification {c:.4f}, evidence {a:.4f} ({time.monotonic() - t0:.0f} s)")
            if monitor is not None and epoch % 5 == 4:
                log(monitor(epoch, net.eval()))
    return net.to(memory_format=torch.contiguous_format).eval()


def _negative(p: Patient, confounder_share: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The patient's CT without fluid, or (``confounder_share`` of the time) one of its confounders; no mask."""
    x = p.x
    if p.confounders and float(torch.rand(1, generator=g)) < confounder_share:
        x = p.confounders[int(torch.randint(len(p.confounders), (1,), generator=g))]
    return x, torch.zeros_like(x)
