"""Merlin's image encoder (I3ResNet-152) and its 1692-phecode phenotype head.

The published weights are ``i3_resnet_clinical_longformer_best_clip_04-02-2024_23-21-36_epoch_99.pt``
(Hugging Face ``stanfordmimi/Merlin``). Facts, each from StanfordMIMI/Merlin:

- ``merlin/models/load.py``: the file is a plain state dict of the whole CLIP model, loaded with a
  strict ``load_state_dict`` into ``MerlinArchitecture``; the five-year model's file holds the bare
  image encoder (``i3_resnet`` keys without prefix).
- ``merlin/models/build.py``: ``MerlinArchitecture`` = ``encode_image`` (``ImageEncoder`` whose only
  module is ``i3_resnet``), ``encode_text`` (Clinical-Longformer + linear) and ``logit_scale``. So
  the image keys are ``encode_image.i3_resnet.*``; everything else is ignored here. The encoder is
  a torchvision ``resnet152`` inflated with ``class_nb=1692, conv_class=True``.
- ``merlin/models/i3res.py`` + ``inflate.py``: stem ``conv1`` 7x7 -> Conv3d kernel (3, 7, 7),
  stride (1, 2, 2), padding (1, 3, 3), no bias, 3 input channels (the 1-channel CT is repeated 3x);
  ``bn1``; ReLU; max pool kernel 3, stride 2, padding 1 on all three axes. Bottleneck: ``conv1`` 1x1x1,
  ``conv2`` 3x3x3 with stride s on all three axes and padding 1, ``conv3`` 1x1x1 (x4 channels),
  ``bn1..3``, ``downsample = [Conv3d 1x1x1 stride s, BN]`` on each layer's first block; torchvision's
  ResNet-152 puts the stride on ``conv2`` and has (3, 8, 36, 3) blocks of width 64, 128, 256, 512.
  Inflated convs drop the (absent) bias, so no conv has a ``bias`` key. Head: adaptive average pool
  to 1x1x1, ``classifier`` Conv3d 2048 -> 1692 (1x1x1, bias) gives the phenotype logits (``x_ehr``;
  ``PhenotypeCls`` returns their sigmoid), ``contrastive_head`` Conv3d 2048 -> 512 the CLIP embedding.
  Input ``[B, 1, H, W, D]`` (slices last), permuted to ``[B, 1, D, H, W]`` inside.
- ``merlin/data/monai_transforms.py``: ``Orientationd("RAS")``, spacing 1.5 x 1.5 x 3 mm,
  ``ScaleIntensityRanged(-1000, 1000 -> 0, 1, clip=True)``, pad / centre crop to 224 x 224 x 160;
  MONAI's array axes are (x, y, z). From an LPS array (slices, rows, cols) as SimpleITK gives it,
  RAS (x, y) = (reversed cols, reversed rows): ``rot90(k=1)`` then a flip of the last axis, then
  slices last. **We resize each slice to 224 x 224** instead of resampling to 1.5 mm and cropping;
  resample the volume beforehand for the exact geometry Merlin was trained on.
- ``documentation/phenotypes.csv`` (columns ``phecode, phecode_str``, 1692 rows in output order,
  MIT licence, Stanford MIMI Lab; at commit 2489a96 it has SHA256
  d85c7db81cce0163e5306310ec1eef245dfa30e5331fe81dbdb82ee77220a673): the target names. It is not
  bundled here; :func:`load_merlin` reads it (or a JSON list) when given or found beside the weights,
  else names the outputs ``phecode_<index>``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.models.checkpoints import extract_state_dict, load_state_into, torch_load
from CTCounterfactualLib.models.classifier import Classifier
from CTCounterfactualLib.models.conventions import HUWindow, VolumeConvention

MERLIN_CONVENTION = VolumeConvention(
    window=HUWindow(-1000.0, 1000.0), clip=True, size=224, rot90_k=1, flip=True, layout="NCHWD"
)
RESNET152_LAYERS = (3, 8, 36, 3)
MERLIN_PHECODES = 1692
# Where the image encoder's keys sit in the files Merlin ships, most specific first.
_PREFIXES = ("encode_image.i3_resnet.", "i3_resnet.", "")
_PHECODE_FILES = ("phenotypes.csv", "merlin_phecodes.json")


class Bottleneck3d(nn.Module):
    """ResNet v1.5 bottleneck inflated to 3D (stride on the 3x3x3 conv, on all three axes)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv3d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(width)
        self.conv2 = nn.Conv3d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(width)
        self.conv3 = nn.Conv3d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv3d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm3d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class MerlinI3ResNet(nn.Module):
    """Merlin's ``I3ResNet`` (``conv_class=True``): [B, 1, H, W, D] in [0, 1] -> [B, num_classes] logits.

    ``layers``/``widths``/``stem_width`` default to ResNet-152; smaller values keep the key layout.
    With gradients on, each bottleneck is checkpointed (as Merlin does in training) so a backward
    pass through a whole CT holds one block's activations at a time.
    """

    def __init__(
        self,
        layers: Sequence[int] = RESNET152_LAYERS,
        widths: Sequence[int] | None = None,
        stem_width: int = 64,
        num_classes: int = MERLIN_PHECODES,
        embed_dim: int = 512,
        in_channels: int = 3,
    ):
        super().__init__()
        widths = tuple(widths) if widths is not None else tuple(stem_width * 2**i for i in range(len(layers)))
        if len(widths) != 4 or len(layers) != 4:
            raise CTCFError("an I3ResNet has four layers: give four block counts and four widths")
        self.in_channels = in_channels
        self.checkpoint = True
        self.conv1 = nn.Conv3d(in_channels, stem_width, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        cin = stem_width
        for i, (blocks, width) in enumerate(zip(layers, widths, strict=True)):
            stride = 1 if i == 0 else 2
            seq = []
            for b in range(blocks):
                seq.append(Bottleneck3d(cin, width, stride if b == 0 else 1))
                cin = width * Bottleneck3d.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*seq))
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.classifier = nn.Conv3d(cin, num_classes, 1, bias=True)
        self.contrastive_head = nn.Conv3d(cin, embed_dim, 1, bias=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, H, W, D] -> pooled [B, C, 1, 1, 1] backbone features."""
        x = x.permute(0, 1, 4, 2, 3)
        x = x.expand(-1, self.in_channels, -1, -1, -1)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in layer:
                if self.checkpoint and torch.is_grad_enabled() and x.requires_grad:
                    x = checkpoint(block, x, use_reentrant=False)
                else:
                    x = block(x)
        return self.avgpool(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x)).flatten(1)


def image_encoder_state(state: dict[str, torch.Tensor], path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The I3ResNet keys of a Merlin file (whole CLIP model, ``ImageEncoder``, or bare encoder)."""
    for prefix in _PREFIXES:
        if prefix + "conv1.weight" in state:
            return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    raise CTCFError(
        f"{Path(path).name} holds no Merlin image encoder (no 'encode_image.i3_resnet.conv1.weight' "
        "or 'conv1.weight'); give Merlin's i3_resnet_clinical_longformer_..._epoch_99.pt"
    )


def infer_i3resnet_config(state: dict[str, torch.Tensor], path: str | os.PathLike) -> dict:
    """Block counts, widths and head sizes of an I3ResNet from its (prefix-free) state dict."""
    try:
        layers = tuple(len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")}) for i in range(1, 5))
        return {
            "layers": layers,
            "widths": tuple(int(state[f"layer{i}.0.conv1.weight"].shape[0]) for i in range(1, 5)),
            "stem_width": int(state["conv1.weight"].shape[0]),
            "in_channels": int(state["conv1.weight"].shape[1]),
            "num_classes": int(state["classifier.weight"].shape[0]),
            "embed_dim": int(state["contrastive_head.weight"].shape[0]),
        }
    except KeyError as e:
        raise CTCFError(
            f"{Path(path).name} is not a Merlin I3ResNet with its phenotype head: key {e.args[0]!r} is missing"
        ) from None


def read_phecodes(path: str | os.PathLike) -> list[dict[str, str]]:
    """Phecodes in output order from Merlin's ``phenotypes.csv`` or a JSON list of {phecode, name}."""
    p = Path(path)
    try:
        if p.suffix.lower() == ".csv":
            with open(p, newline="", encoding="utf-8") as f:
                rows = [{"phecode": r["phecode"], "name": r["phecode_str"]} for r in csv.DictReader(f)]
        else:
            doc = json.loads(p.read_text(encoding="utf-8"))
            items = doc["phecodes"] if isinstance(doc, dict) else doc
            rows = [{"phecode": str(r["phecode"]), "name": str(r["name"])} for r in items]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise CTCFError(
            f"cannot read phecode names from {p}: {e!r}; give Merlin's documentation/phenotypes.csv "
            'or a JSON list of {"phecode", "name"}'
        ) from None
    if any(not r["name"].strip() for r in rows):
        raise CTCFError(f"{p} has a phecode without a name")
    return rows


def phecode_targets(count: int, weights: Path, phecodes: str | os.PathLike | None) -> list[str]:
    """Target names: the phecode list given, else one beside the weights, else ``phecode_<index>``."""
    source = Path(phecodes) if phecodes is not None else None
    if source is None:
        source = next((weights.with_name(n) for n in _PHECODE_FILES if weights.with_name(n).is_file()), None)
    if source is None:
        return [f"phecode_{i}" for i in range(count)]
    names = [r["name"] for r in read_phecodes(source)]
    if len(names) != count:
        raise CTCFError(f"{source.name} lists {len(names)} phecodes but {weights.name} has {count} outputs")
    return names


def load_merlin_encoder(path: str | os.PathLike, *, allow_pickle: bool = False) -> MerlinI3ResNet:
    """Merlin's I3ResNet with the weights of a Merlin checkpoint (text encoder keys dropped)."""
    state = image_encoder_state(extract_state_dict(torch_load(path, allow_pickle=allow_pickle), path), path)
    model = MerlinI3ResNet(**infer_i3resnet_config(state, path))
    load_state_into(model, state, path)
    return model.eval()


def load_merlin(
    path: str | os.PathLike, phecodes: str | os.PathLike | None = None, *, allow_pickle: bool = False
) -> Classifier:
    """Merlin's phenotype classifier: 1692 phecode probabilities for a CT volume.

    ``phecodes``: Merlin's ``phenotypes.csv`` or a JSON list for the target names; without it a
    ``phenotypes.csv`` or ``merlin_phecodes.json`` beside the weights is used, else ``phecode_<i>``.
    """
    p = Path(path)
    model = load_merlin_encoder(p, allow_pickle=allow_pickle)
    return Classifier(
        module=model,
        targets=phecode_targets(model.classifier.out_channels, p, phecodes),
        convention=MERLIN_CONVENTION,
        apply_sigmoid=True,
        threshold=0.5,
        name=p.stem,
    )
