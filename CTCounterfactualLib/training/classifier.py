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
SOFT_TISSUE_WINDOW_HU = (-135.0, 215.0)  # width 350, level 40: fluid, muscle and fat apart


def hu_window_in_model_units(window: tuple[float, float], conv: VolumeConvention = EFFUSION_CONVENTION) -> tuple:
    """An HU window as (low, high) in ``conv``'s input units (what ``EffusionNet(windows=...)`` takes)."""
    return tuple(conv.window.to_unit(float(v)) * conv.input_scale + conv.input_offset for v in window)


class BlurDown3d(nn.Module):
    """Stride-2 subsampling after a [1, 2, 1] / 4 blur along each axis whose ``stride`` is 2 (no parameters).

    Every input voxel then carries the same total weight into the output. A 3-wide convolution at
    stride 2 gives every other slice twice the weight of its neighbours, and its input gradient - the
    direction Latent Shift follows - alternates in sign from slice to slice: with that design the bundled
    classifier's counterfactual darkened the fluid on odd slices and brightened it on even ones.
    """

    def __init__(self, stride: tuple[int, int, int]):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        taps = torch.tensor([0.25, 0.5, 0.25], dtype=x.dtype, device=x.device)
        one = torch.ones(1, dtype=x.dtype, device=x.device)
        kd = taps if self.stride[0] == 2 else one
        kh = taps if self.stride[1] == 2 else one
        kw = taps if self.stride[2] == 2 else one
        kernel = kd[:, None, None] * kh[None, :, None] * kw[None, None, :]
        pd, ph, pw = (1 if s == 2 else 0 for s in self.stride)
        x = nn.functional.pad(x, [pw, pw, ph, ph, pd, pd], mode="replicate")
        c = x.shape[1]
        weight = kernel.expand(c, 1, kernel.shape[0], kernel.shape[1], kernel.shape[2]).contiguous()
        return nn.functional.conv3d(x, weight, stride=self.stride, groups=c)


class EffusionNet(nn.Module):
    """Three anti-aliased downsamplings, each followed by a 3D convolution, to a per-location evidence map,
    pooled by the mean of its top k.

    Downsampling first (``BlurDown3d``) and convolving at stride 1 keeps the convolutions' cost of a
    strided design while giving an input gradient without a slice-to-slice checkerboard. BatchNorm, a
    per-channel affine at inference, rather than GroupNorm, whose statistics over the whole volume tie
    every voxel (air included) to every evidence location: the gradient stays near the evidence. Mean pooling
    could not learn a finding that covers under 1% of the volume; a plain max would send the whole
    gradient to one location, so a counterfactual could only erase one spot of a larger effusion. The
    top-k mean learns and spreads the gradient over the finding.

    ``windows`` (low, high pairs in the net's input units) add one input channel each: the input clipped to that
    window and stretched to [-1, 1], as radiologists window a CT. On the [-1000, 1000] HU input fluid (0-30 HU)
    and muscle (40-60 HU) differ by a few hundredths; in a soft-tissue window by a tenth or more.
    """

    def __init__(self, n_targets: int = 1, width: int = 8, top_k: int = 16, windows: tuple = ()):
        super().__init__()
        self.top_k = top_k
        self.register_buffer("input_windows", torch.tensor(windows, dtype=torch.float32).reshape(-1, 2))
        layers: list[nn.Module] = []
        channels = [1 + len(windows), width, 2 * width, 4 * width]
        for i, stride in enumerate([(1, 2, 2), (2, 2, 2), (2, 2, 2)]):
            layers += [
                BlurDown3d(stride),
                nn.Conv3d(channels[i], channels[i + 1], 3, padding=1),
                nn.BatchNorm3d(channels[i + 1]),
                nn.SiLU(),
            ]
        self.features = nn.Sequential(*layers, nn.Conv3d(4 * width, n_targets, 1))
        self.bias = nn.Parameter(torch.zeros(n_targets))
        # the evidence map's scale is pinned by its own per-location loss (calibrated per location); the volume's
        # logit needs its own gain to reach confident scores from it
        self.scale = nn.Parameter(torch.ones(n_targets))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pooled(self.features(self.windowed(x)))

    def windowed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, D, H, W) input -> (B, 1 + windows, D, H, W): the input, then one channel per window."""
        if self.input_windows.shape[0] == 0:
            return x  # no copy: training keeps its channels-last layout
        channels = [x]
        for i in range(self.input_windows.shape[0]):
            low, high = self.input_windows[i, 0], self.input_windows[i, 1]
            channels.append(((x - low) / (high - low)).clamp(0.0, 1.0) * 2.0 - 1.0)
        return torch.cat(channels, 1)

    def pooled(self, evidence: torch.Tensor) -> torch.Tensor:
        """(B, T, D, H, W) evidence map -> (B, T) logits: the mean of the top k locations, scaled, plus the bias."""
        flat = evidence.flatten(2)
        return flat.topk(min(self.top_k, flat.shape[-1]), dim=-1).values.mean(-1) * self.scale + self.bias


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
    x: torch.Tensor,
    y: torch.Tensor,
    tc: ClassifierTrainConfig,
    log: Callable[[int, dict], None] | None = None,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    masks: torch.Tensor | None = None,
    aux_weight: float = 1.0,
    aux_pos_weight: float = 10.0,
) -> EffusionNet:
    """Train on (N, 1, D, H, W) inputs; ``augment`` replaces the default left/right flip (phantoms).

    With ``masks`` (N, 1, D, H, W, 1 = fluid) the evidence map is also supervised location by
    location (BCE against the mask max-pooled to its grid, weight ``aux_weight``): the classifier
    then learns from few volumes, and its evidence - which Latent Shift follows - sits on the fluid.
    """
    torch.manual_seed(tc.seed)
    net = EffusionNet()
    opt = torch.optim.Adam(net.parameters(), lr=tc.lr)
    g = torch.Generator().manual_seed(tc.seed)
    for epoch in range(tc.epochs):
        order = torch.randperm(len(x), generator=g)
        total = 0.0
        for i in range(0, len(x), tc.batch):
            idx = order[i : i + tc.batch]
            xb = x[idx] if masks is None else torch.cat([x[idx], masks[idx]], 1)
            if augment is not None:
                xb = augment(xb, g)
            elif torch.rand(1, generator=g).item() < 0.5:  # left/right flip: effusion on either side
                xb = torch.flip(xb, dims=(-1,))
            xb, mb = xb[:, :1], xb[:, 1:]
            # label smoothing keeps the sigmoid off saturation: at p = 1 - 1e-6 its gradient, which
            # Latent Shift follows, is a millionth of the logit's and no lambda moves the prediction
            target = y[idx] * (1 - tc.label_smoothing) + tc.label_smoothing / 2
            if masks is None:
                loss = nn.functional.binary_cross_entropy_with_logits(net(xb)[:, 0], target)
            else:
                evidence = net.features(net.windowed(xb))
                logit = net.pooled(evidence)
                local = (nn.functional.adaptive_max_pool3d(mb, evidence.shape[2:]) > 0.25).float()
                loss = nn.functional.binary_cross_entropy_with_logits(logit[:, 0], target)
                # fluid is ~1% of the locations: weight it up so the evidence map learns it within a few epochs
                pos_weight = torch.tensor(aux_pos_weight)
                aux = nn.functional.binary_cross_entropy_with_logits(evidence, local, pos_weight=pos_weight)
                loss = loss + aux_weight * aux
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
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return path
