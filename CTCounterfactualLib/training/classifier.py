"""``ctcf train-classifier``: a small 3D CNN for pleural effusion, trained on chest phantoms.

Half the training volumes go through the autoencoder first (when one is given), so the classifier
sees the reconstructions it will be asked about during a counterfactual search.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from CTCounterfactualLib.data.phantom import PhantomSpec, make_phantom
from CTCounterfactualLib.method.latent_ops import reconstruct
from CTCounterfactualLib.models.autoencoder import SliceAutoencoder
from CTCounterfactualLib.models.classifier import save_torchscript
from CTCounterfactualLib.models.conventions import HUWindow, VolumeConvention

EFFUSION_CONVENTION = VolumeConvention(
    window=HUWindow(-1000.0, 1000.0),
    clip=False,
    size=64,
    input_scale=2.0,
    input_offset=-1.0,
    layout="NCDHW",
)
EFFUSION_TARGETS = ["pleural effusion"]


class EffusionNet(nn.Module):
    """Three strided 3D convolutions to a per-location evidence map, pooled by the mean of its top k.

    Mean pooling could not learn a finding that covers under 1% of the volume; a plain max would
    send the whole gradient to one location, so a counterfactual could only erase one spot of a
    larger effusion. The top-k mean learns and spreads the gradient over the finding.
    """

    def __init__(self, n_targets: int = 1, width: int = 8, top_k: int = 16):
        super().__init__()
        self.top_k = top_k
        self.features = nn.Sequential(
            nn.Conv3d(1, width, 3, stride=(1, 2, 2), padding=1),
            nn.GroupNorm(4, width),
            nn.SiLU(),
            nn.Conv3d(width, 2 * width, 3, stride=2, padding=1),
            nn.GroupNorm(4, 2 * width),
            nn.SiLU(),
            nn.Conv3d(2 * width, 4 * width, 3, stride=2, padding=1),
            nn.GroupNorm(4, 4 * width),
            nn.SiLU(),
            nn.Conv3d(4 * width, n_targets, 1),
        )
        self.bias = nn.Parameter(torch.zeros(n_targets))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        evidence = self.features(x).flatten(2)
        k = min(self.top_k, evidence.shape[-1])
        return evidence.topk(k, dim=-1).values.mean(-1) + self.bias


@dataclass
class ClassifierTrainConfig:
    n_train: int = 160
    epochs: int = 120
    batch: int = 8
    lr: float = 1e-3
    label_smoothing: float = 0.1
    seed: int = 0
    first_seed: int = 10_000  # phantom seeds first_seed .. first_seed + n_train - 1


def random_effusion_spec(seed: int, positive: bool, **kwargs) -> PhantomSpec:
    """A phantom spec whose effusion (if positive) has a random side, depth and slice run."""
    rng = np.random.default_rng(seed + 7_777)
    start = rng.uniform(0.05, 0.3)
    return PhantomSpec(
        seed=seed,
        effusion=str(rng.choice(["right", "left", "both"])) if positive else "none",
        effusion_depth_mm=float(rng.uniform(15, 40)),
        effusion_extent=(start, start + rng.uniform(0.3, 0.55)),
        nodules=int(rng.integers(0, 3)),
        **kwargs,
    )


def phantom_dataset(
    seeds: list[int], ae: SliceAutoencoder | None, conv: VolumeConvention, recon_share: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Classifier inputs and labels for phantoms (every other one positive)."""
    xs, ys = [], []
    for i, seed in enumerate(seeds):
        positive = i % 2 == 0
        hu = torch.as_tensor(make_phantom(random_effusion_spec(seed, positive)).hu)
        if ae is not None and (i // 2) % round(1 / recon_share) == 0:
            hu = ae.window.to_hu(reconstruct(ae, ae.window.to_unit(hu).clamp(0, 1)))
        xs.append(conv.to_model(hu.clamp(-1000, 1000))[0])
        ys.append(float(positive))
    return torch.stack(xs), torch.tensor(ys)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def train_classifier(
    x: torch.Tensor, y: torch.Tensor, tc: ClassifierTrainConfig, log: Callable[[int, dict], None] | None = None
) -> EffusionNet:
    torch.manual_seed(tc.seed)
    net = EffusionNet()
    opt = torch.optim.Adam(net.parameters(), lr=tc.lr)
    g = torch.Generator().manual_seed(tc.seed)
    for epoch in range(tc.epochs):
        order = torch.randperm(len(x), generator=g)
        total = 0.0
        for i in range(0, len(x), tc.batch):
            idx = order[i : i + tc.batch]
            xb = x[idx]
            if torch.rand(1, generator=g).item() < 0.5:  # left/right flip: effusion on either side
                xb = torch.flip(xb, dims=(-1,))
            # label smoothing keeps the sigmoid off saturation: at p = 1 - 1e-6 its gradient, which
            # Latent Shift follows, is a millionth of the logit's and no lambda moves the prediction
            target = y[idx] * (1 - tc.label_smoothing) + tc.label_smoothing / 2
            loss = nn.functional.binary_cross_entropy_with_logits(net(xb)[:, 0], target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        if log is not None:
            log(epoch, {"loss": total / len(x)})
    return net.eval()


def save_classifier(net: nn.Module, path: str | os.PathLike, info: dict, threshold: float = 0.5) -> Path:
    """TorchScript file + the sidecar JSON the engine reads (targets, sigmoid, convention)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_torchscript(net, path)
    meta = {
        "name": path.stem,
        "targets": EFFUSION_TARGETS,
        "apply_sigmoid": True,
        "threshold": threshold,
        "convention": EFFUSION_CONVENTION.to_dict(),
        "training": info,
    }
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    return path
