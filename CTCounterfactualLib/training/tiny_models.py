"""Small random models of the real kinds, for tests and the benchmark (not for explaining CTs)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from CTCounterfactualLib.method.latent_ops import reconstruct
from CTCounterfactualLib.models.autoencoder import SliceAutoencoder
from CTCounterfactualLib.models.classifier import Classifier, save_torchscript
from CTCounterfactualLib.models.conventions import SliceConvention, VolumeConvention
from CTCounterfactualLib.models.vqgan import VQGANConfig, VQModel


def tiny_vqgan_config(ch: int = 8, attention: bool = True) -> VQGANConfig:
    """Two levels (4x downsampling), attention at the lower level, 4 norm groups."""
    return VQGANConfig(
        ch=ch,
        ch_mult=(1, 2),
        num_res_blocks=1,
        attn_resolutions=(16,) if attention else (),
        resolution=32,
        in_channels=1,
        out_ch=1,
        z_channels=4,
        embed_dim=4,
        n_embed=32,
        norm_groups=4,
    )


def tiny_autoencoder(seed: int = 0, size: int | None = 32, ch: int = 8) -> SliceAutoencoder:
    torch.manual_seed(seed)
    model = VQModel(tiny_vqgan_config(ch)).eval()
    return SliceAutoencoder(model, SliceConvention(size=size, rot90_k=1, flip=True), name="tiny-vqgan")


class TinyVolumeNet(nn.Module):
    """Strided 3D convs, global pooling, one linear layer: [1, 1, D, H, W] -> [1, n_targets]."""

    def __init__(self, n_targets: int = 2, width: int = 4):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv3d(1, width, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv3d(width, 2 * width, 3, stride=2, padding=1),
            nn.SiLU(),
        )
        self.head = nn.Linear(2 * width, n_targets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3, 4)))


def tiny_classifier(
    seed: int = 0,
    targets: tuple[str, ...] = ("effusion", "lung size"),
    width: int = 4,
    gain: float = 50.0,
) -> Classifier:
    """``gain`` scales the head so that the random net's outputs react visibly to the input."""
    torch.manual_seed(seed)
    net = TinyVolumeNet(len(targets), width).eval()
    with torch.no_grad():
        net.head.weight.mul_(gain)
    return Classifier(net, list(targets), VolumeConvention(), apply_sigmoid=True, name="tiny-classifier")


def save_tiny_models(folder: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """Write a tiny VQ-GAN (Lightning-style .ckpt with loss.* keys + sidecar) and a TorchScript
    classifier (+ sidecar) as users would have them on disk; returns (autoencoder, classifier)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ae = tiny_autoencoder(seed)
    state = dict(ae.model.state_dict())
    state["loss.discriminator.main.0.weight"] = torch.zeros(2, 1, 4, 4)  # dropped on load
    ae_path = folder / "tiny_vqgan.ckpt"
    torch.save({"state_dict": state, "epoch": 3}, ae_path)
    ae_meta = {"name": "tiny-vqgan", "architecture": ae.model.config.to_dict(), "convention": ae.convention.to_dict()}
    (folder / "tiny_vqgan.json").write_text(json.dumps(ae_meta, indent=2), encoding="utf-8")
    clf = tiny_classifier(seed)
    clf_path = folder / "tiny_classifier.pt"
    save_torchscript(clf.module, clf_path)
    clf_meta = {
        "name": "tiny-classifier",
        "targets": clf.targets,
        "apply_sigmoid": True,
        "threshold": 0.5,
        "convention": clf.convention.to_dict(),
    }
    (folder / "tiny_classifier.json").write_text(json.dumps(clf_meta, indent=2), encoding="utf-8")
    return ae_path, clf_path


@torch.no_grad()
def center_classifier(clf: Classifier, ae: SliceAutoencoder, hu: torch.Tensor, prob: float = 0.9) -> None:
    """Shift the tiny net's head bias so that the reconstruction of ``hu`` scores ``prob`` on
    every target: a random net then sits on the steep part of its sigmoid, as a trained one would."""
    recon = ae.window.to_hu(reconstruct(ae, ae.window.to_unit(hu).clamp(0, 1)))
    logits = clf.module.head(clf.module.features(clf.convention.to_model(recon)).mean(dim=(2, 3, 4)))[0]
    clf.module.head.bias -= logits - torch.logit(torch.tensor(prob, dtype=logits.dtype))
