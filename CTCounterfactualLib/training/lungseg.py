"""``ctcf train-lungseg``: a small 2D lung segmentation net and the paper's lung-size target.

The net labels each slice pixel 0 = no lung, 1 = right lung, 2 = left lung (lungmask's classes).
The lung-size "classifier" runs it on every slice and returns 1 - mean P(no lung), the paper's
target, so Latent Shift can make lungs smaller or larger.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from CTCounterfactualLib.data.phantom import LABELS, PhantomSpec, make_phantom
from CTCounterfactualLib.models.classifier import save_torchscript
from CTCounterfactualLib.training.classifier import EFFUSION_CONVENTION

LUNGSIZE_CONVENTION = EFFUSION_CONVENTION  # same input as the demo effusion classifier
LUNG_LABELS = (LABELS["right_lung"], LABELS["left_lung"], LABELS["vessels"], LABELS["nodule"])


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.GroupNorm(4, cout),
        nn.SiLU(),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.GroupNorm(4, cout),
        nn.SiLU(),
    )


class LungSegNet(nn.Module):
    """Two-level U-Net: [B, 1, H, W] in [-1, 1] -> [B, 3, H, W] logits (H, W divisible by 4)."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.enc1, self.enc2, self.mid = _block(1, width), _block(width, 2 * width), _block(2 * width, 4 * width)
        self.dec2, self.dec1 = _block(6 * width, 2 * width), _block(3 * width, width)
        self.out = nn.Conv2d(width, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels-last from the first block on: on CPU, nearest upsampling of NCHW activations is about 13x
        # slower than of NHWC ones, which made the whole net 2x slower (133 slices: 0.87 -> 0.40 s); same values
        e1 = self.enc1(x).contiguous(memory_format=torch.channels_last)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        m = self.mid(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([F.interpolate(m, scale_factor=2.0, mode="nearest"), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0, mode="nearest"), e1], 1))
        return self.out(d1)


class LungSize(nn.Module):
    """[1, 1, D, H, W] -> [1, 1]: 1 - mean over all voxels of P(no lung)."""

    def __init__(self, net: LungSegNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slices = x[0].permute(1, 0, 2, 3)  # (D, 1, H, W)
        p_none = torch.softmax(self.net(slices), dim=1)[:, 0]
        return (1.0 - p_none.mean()).reshape(1, 1)


def lung_classes(labels: np.ndarray) -> np.ndarray:
    """Phantom labels -> 0 none, 1 right lung (image left, LPS), 2 left lung; vessels/nodules count as lung."""
    lung = np.isin(labels, LUNG_LABELS)
    cols = np.arange(labels.shape[-1])
    right_side = cols < labels.shape[-1] / 2
    return np.where(lung, np.where(right_side, 1, 2), 0).astype(np.int64)


def _resize_pair(hu: np.ndarray, classes: np.ndarray, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = LUNGSIZE_CONVENTION.to_model(torch.as_tensor(hu, dtype=torch.float32).clamp(-1000, 1000))[0, 0]
    y = F.interpolate(torch.as_tensor(classes)[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()
    return x[:, None], y


def lung_dataset(seeds: list[int], size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for i, seed in enumerate(seeds):
        p = make_phantom(PhantomSpec(seed=seed, effusion=("none", "right", "left", "both")[i % 4], nodules=i % 3))
        x, y = _resize_pair(p.hu, lung_classes(p.labels), size)
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)


def real_lung_dataset(hu: np.ndarray, labels: np.ndarray, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Slices of a real CT (LPS grid) with classes from TotalSegmentator lobes (right 12-14, left 10-11)."""
    from CTCounterfactualLib.data.demo_ct import LEFT_LUNG_LABELS, RIGHT_LUNG_LABELS

    classes = np.where(np.isin(labels, RIGHT_LUNG_LABELS), 1, np.where(np.isin(labels, LEFT_LUNG_LABELS), 2, 0))
    return _resize_pair(hu, classes.astype(np.int64), size)


def real_lung_pairs(hu: np.ndarray, classes: np.ndarray, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Slices of a real CT and their lung classes (0 none, 1 right, 2 left, or 0/1) on the net's grid."""
    return _resize_pair(hu, classes, size)


def _affine_pair(
    x: torch.Tensor, y: torch.Tensor, g: torch.Generator, rot_deg: float = 8, zoom: float = 0.15
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same small rotation / zoom / shift of slices (bilinear, air outside) and their classes (nearest)."""
    b = x.shape[0]
    u = torch.rand(b, 4, generator=g) * 2 - 1
    a = u[:, 0] * rot_deg * torch.pi / 180
    z = 1 + u[:, 1] * zoom
    cos, sin = torch.cos(a) / z, torch.sin(a) / z
    theta = torch.stack([torch.stack([cos, -sin, u[:, 2] * 0.1], 1), torch.stack([sin, cos, u[:, 3] * 0.1], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    xa = F.grid_sample(x + 1, grid, align_corners=False) - 1  # model input -1 is -1000 HU: air
    ya = F.grid_sample(y[:, None].float(), grid, mode="nearest", align_corners=False)[:, 0].long()
    return xa, ya


def train_lungseg(
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int = 800,
    batch: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    log=None,
    augment: bool = False,
) -> LungSegNet:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = LungSegNet()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for step in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=g)
        xb, yb = _affine_pair(x[idx], y[idx], g) if augment else (x[idx], y[idx])
        loss = F.cross_entropy(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if log is not None and (step % 100 == 0 or step == steps - 1):
            log(step, {"loss": float(loss.detach())})
    return net.eval()


@torch.no_grad()
def lung_dice(net: LungSegNet, x: torch.Tensor, lung: torch.Tensor) -> float:
    """Dice of (argmax != no lung) against a binary lung mask, over a stack of slices."""
    pred = torch.cat([net(x[i : i + 64]).argmax(1) for i in range(0, len(x), 64)]) > 0
    inter = (pred & lung).sum().item()
    return float(2 * inter / max(1, pred.sum().item() + lung.sum().item()))


def real_ct_dice(
    net: LungSegNet,
    ct_path: str | os.PathLike,
    seg_path: str | os.PathLike,
    lung_labels: tuple[int, ...] = (10, 11, 12, 13, 14),
) -> float:
    """Lung Dice on a real CT against a TotalSegmentator label map, over the slices the map covers."""
    import SimpleITK as sitk

    ct, seg = sitk.ReadImage(str(ct_path)), sitk.ReadImage(str(seg_path))
    on_ct = sitk.Resample(seg, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    covered_img = sitk.Resample(
        sitk.Cast(seg * 0, sitk.sitkUInt8) + 1, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0
    )
    covered = sitk.GetArrayFromImage(covered_img).any(axis=(1, 2))
    labels = sitk.GetArrayFromImage(on_ct)[covered]
    hu = sitk.GetArrayFromImage(ct).astype(np.float32)[covered]
    x, y = _resize_pair(hu, np.isin(labels, lung_labels).astype(np.int64), 64)
    return lung_dice(net, x, y > 0)


def save_lungsize(net: LungSegNet, path: str | os.PathLike, info: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_torchscript(LungSize(net), path)
    meta = {
        "name": path.stem,
        "targets": ["lung size"],
        "apply_sigmoid": False,
        "threshold": 0.5,
        "convention": LUNGSIZE_CONVENTION.to_dict(),
        "training": info,
        "notes": "1 - mean P(no lung) over all voxels (the paper's lung-size target); not a probability",
    }
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return path
