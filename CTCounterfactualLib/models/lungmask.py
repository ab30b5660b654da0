"""lungmask's U-net R231 and the paper's lung-size target built on it.

The published weights are ``unet_r231-d5d2fc3d.pth`` (JoHof/lungmask, release v0.0): a plain
state dict. Facts, each from JoHof/lungmask:

- ``lungmask/mask.py`` (``get_model``): ``UNet(n_classes=3, padding=True, depth=5,
  up_mode="upsample", batch_norm=True, residual=False)``, default ``wf=6`` (64..1024 channels), loaded
  with a strict ``load_state_dict``. Classes: 0 no lung, 1 right lung, 2 left lung.
- ``lungmask/resunet.py``: every conv block (down and up) also builds ``residual_input_conv`` and
  ``residual_batchnorm`` even when ``residual=False``; they are in the state dict (strict load) but
  never run. Conv block layout ``Conv3x3, ReLU, BN, Conv3x3, ReLU, BN`` (keys ``block.0/2/3/5``);
  2x2 *average* pooling between levels; up block ``up = [Upsample(bilinear, x2), Conv1x1]``
  (keys ``up.1.*``) then concatenation ``[up, bridge]`` and a conv block; ``last`` is a 1x1 conv
  followed by a parameter-free LogSoftmax.
- ``lungmask/utils.py`` (``preprocess``, ``crop_and_resize``) and ``mask.py`` (``_inference``):
  HU clipped to [-1024, 600], each axial slice cropped to the body bounding box and resized to
  256x256 with ``scipy.ndimage.zoom(order=1)`` (linear, corner pixels aligned), then
  ``(x + 1024) / 1624``. **We skip the body crop**: the whole slice is resized to 256x256, so on
  scans with much air around the body lungmask's input is more zoomed in than ours.
- Orientation (``mask.py``): a SimpleITK image is reoriented with ``sitk.DICOMOrient(image, "LPS")``
  and taken as ``GetArrayFromImage`` with no further flip or rotation. Our volumes are arrays as
  SimpleITK gives them, so for the usual DICOM/NRRD axial scan with identity direction (LPS) they are
  exactly what lungmask feeds the network: the convention has ``rot90_k=0, flip=False``. A volume
  stored in another orientation should be reoriented to LPS before explaining it.

The lung-size target (the paper, section 5.1) is ``1 - mean P(no lung)`` over every voxel of the
(resized) volume; it is not a probability, so the classifier has ``apply_sigmoid=False``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.models.checkpoints import extract_state_dict, load_state_into, torch_load
from CTCounterfactualLib.models.classifier import Classifier
from CTCounterfactualLib.models.conventions import HUWindow, VolumeConvention

LUNGMASK_SLICE_SIZE = 256
# clip(HU, -1024, 600) then (x + 1024) / 1624 is exactly this window with clipping.
LUNGMASK_CONVENTION = VolumeConvention(window=HUWindow(-1024.0, 600.0), clip=True, layout="NCDHW")


class UNetConvBlock(nn.Module):
    """Two 3x3 convs, each followed by ReLU then (optionally) batch norm."""

    def __init__(self, cin: int, cout: int, padding: bool = True, batch_norm: bool = True):
        super().__init__()
        # Unused by R231 (residual=False) but present in lungmask's state dicts; registered first, as there.
        self.residual_input_conv = nn.Conv2d(cin, cout, kernel_size=1)
        self.residual_batchnorm = nn.BatchNorm2d(cout)
        layers: list[nn.Module] = []
        for i in range(2):
            layers += [nn.Conv2d(cin if i == 0 else cout, cout, kernel_size=3, padding=int(padding)), nn.ReLU()]
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class UNetUpBlock(nn.Module):
    """Upsample (bilinear x2 + 1x1 conv, or a transposed conv), concatenate the skip, conv block."""

    def __init__(self, cin: int, cout: int, up_mode: str, padding: bool, batch_norm: bool):
        super().__init__()
        self.residual_input_conv = nn.Conv2d(cin, cout, kernel_size=1)  # unused, as in UNetConvBlock
        self.residual_batchnorm = nn.BatchNorm2d(cout)
        if up_mode == "upsample":
            self.up = nn.Sequential(nn.Upsample(mode="bilinear", scale_factor=2), nn.Conv2d(cin, cout, kernel_size=1))
        else:
            self.up = nn.ConvTranspose2d(cin, cout, kernel_size=2, stride=2)
        self.conv_block = UNetConvBlock(cin, cout, padding, batch_norm)

    def forward(self, x: torch.Tensor, bridge: torch.Tensor) -> torch.Tensor:
        up = self.up(x)
        h, w = up.shape[-2:]
        top, left = (bridge.shape[-2] - h) // 2, (bridge.shape[-1] - w) // 2
        return self.conv_block(torch.cat([up, bridge[..., top : top + h, left : left + w]], 1))


class LungmaskUNet(nn.Module):
    """lungmask's ``UNet`` (non-residual): [B, in_channels, H, W] -> [B, n_classes, H, W] logits.

    lungmask applies a LogSoftmax on top; it has no parameters, so softmax of these logits is the
    same class probability. With ``padding=True`` H and W must be divisible by ``2**(depth-1)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 3,
        depth: int = 5,
        wf: int = 6,
        padding: bool = True,
        batch_norm: bool = True,
        up_mode: str = "upsample",
    ):
        super().__init__()
        if up_mode not in ("upsample", "upconv"):
            raise CTCFError(f"lungmask up_mode must be 'upsample' or 'upconv', not {up_mode!r}")
        widths = [2 ** (wf + i) for i in range(depth)]
        self.down_path = nn.ModuleList()
        prev = in_channels
        for w in widths:
            self.down_path.append(UNetConvBlock(prev, w, padding, batch_norm))
            prev = w
        self.up_path = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up_path.append(UNetUpBlock(prev, w, up_mode, padding, batch_norm))
            prev = w
        self.last = nn.Conv2d(prev, n_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, down in enumerate(self.down_path):
            x = down(x)
            if i < len(self.down_path) - 1:
                skips.append(x)
                x = F.avg_pool2d(x, 2)
        for up, skip in zip(self.up_path, reversed(skips), strict=True):
            x = up(x, skip)
        return self.last(x)


def resize_like_ndimage_zoom(slices: torch.Tensor, size: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, size, size], linear, first and last pixel centres kept in place.

    This is ``scipy.ndimage.zoom(..., order=1)`` (its default ``grid_mode=False`` maps output
    pixel ``o`` to input ``o * (n_in - 1) / (n_out - 1)``), i.e. bilinear with ``align_corners=True``
    and no antialiasing, as lungmask resizes its slices.
    """
    if tuple(slices.shape[-2:]) == (size, size):
        return slices
    return F.interpolate(slices, size=(size, size), mode="bilinear", align_corners=True)


class LungmaskLungSize(nn.Module):
    """[1, 1, D, H, W] in lungmask units -> [1, 1]: 1 - mean P(no lung) over all resized voxels.

    Slices go through the U-net ``batch`` at a time; with gradients on, each batch is
    checkpointed so the backward pass holds one batch's activations, not the whole volume's.
    """

    def __init__(self, unet: LungmaskUNet, slice_size: int = LUNGMASK_SLICE_SIZE, batch: int = 4):
        super().__init__()
        self.unet = unet
        self.slice_size = slice_size
        self.batch = batch
        self.checkpoint = True

    def _no_lung_sum(self, slices: torch.Tensor) -> torch.Tensor:
        x = resize_like_ndimage_zoom(slices, self.slice_size)
        return torch.softmax(self.unet(x), dim=1)[:, 0].sum()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slices = x[0].permute(1, 0, 2, 3)  # (D, 1, H, W)
        total = slices.new_zeros(())
        for start in range(0, slices.shape[0], self.batch):
            part = slices[start : start + self.batch]
            if self.checkpoint and torch.is_grad_enabled() and part.requires_grad:
                total = total + checkpoint(self._no_lung_sum, part, use_reentrant=False)
            else:
                total = total + self._no_lung_sum(part)
        voxels = slices.shape[0] * self.slice_size * self.slice_size
        return (1.0 - total / voxels).reshape(1, 1)


def infer_unet_config(state: dict[str, torch.Tensor], path: str | os.PathLike) -> dict:
    """Depth, width, classes, up mode and batch norm of a lungmask U-net from its state dict."""
    try:
        first = state["down_path.0.block.0.weight"]
        n_classes = state["last.weight"].shape[0]
    except KeyError as e:
        raise CTCFError(
            f"{Path(path).name} is not a lungmask U-net state dict (key {e.args[0]!r} is missing); "
            "give lungmask's unet_r231-d5d2fc3d.pth"
        ) from None
    depth = len({k.split(".")[1] for k in state if k.startswith("down_path.")})
    width = int(first.shape[0])
    if width & (width - 1):
        raise CTCFError(f"{Path(path).name}: first U-net level has {width} channels, not a power of two")
    return {
        "in_channels": int(first.shape[1]),
        "n_classes": int(n_classes),
        "depth": depth,
        "wf": width.bit_length() - 1,
        "batch_norm": "down_path.0.block.2.running_mean" in state,
        "up_mode": "upsample" if "up_path.0.up.1.weight" in state else "upconv",
    }


def _with_bn_counters(state: dict[str, torch.Tensor], module: nn.Module) -> dict[str, torch.Tensor]:
    """Add BatchNorm ``num_batches_tracked`` counters a pre-0.4.1 file may lack (unused in eval)."""
    own = module.state_dict()
    missing = {k: own[k] for k in own if k.endswith(".num_batches_tracked") and k not in state}
    return {**state, **missing} if missing else state


def load_lungmask_unet(path: str | os.PathLike, *, allow_pickle: bool = False) -> LungmaskUNet:
    """lungmask's U-net with the weights of a plain state-dict ``.pth`` (architecture from its keys)."""
    state = extract_state_dict(torch_load(path, allow_pickle=allow_pickle), path)
    unet = LungmaskUNet(**infer_unet_config(state, path))
    load_state_into(unet, _with_bn_counters(state, unet), path)
    return unet.eval()


def load_lungmask_r231(path: str | os.PathLike, *, allow_pickle: bool = False) -> Classifier:
    """The paper's lung-size target on lungmask's R231 weights (``unet_r231-d5d2fc3d.pth``)."""
    # NHWC weights make every convolution's output NHWC (the one-channel input needs no change); on CPU the
    # U-net then runs 1.25x faster forward and 1.5x forward+backward (256 x 256 slices), same values; moving
    # the module to a device or dtype keeps the layout
    unet = load_lungmask_unet(path, allow_pickle=allow_pickle).to(memory_format=torch.channels_last)
    return Classifier(
        module=LungmaskLungSize(unet).eval(),
        targets=["lung size"],
        convention=LUNGMASK_CONVENTION,
        apply_sigmoid=False,
        threshold=0.5,
        name=Path(path).stem,
    )
