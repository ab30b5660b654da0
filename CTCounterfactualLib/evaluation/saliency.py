"""Gradient saliency baselines (paper Fig. 4) with captum, mapped back onto the volume's voxels.

captum's GuidedBackprop and Grad-CAM need an eager ``nn.Module`` with hooks, so the bundled
TorchScript effusion classifier is rebuilt as ``EffusionNet`` and given the script's state dict.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.models.classifier import Classifier
from CTCounterfactualLib.models.conventions import VolumeConvention
from CTCounterfactualLib.training.classifier import EffusionNet

METHODS = ("Saliency", "InputXGradient", "GuidedBackprop", "GradCAM")


class _GuidedSiLU(nn.ReLU):
    """SiLU that captum's GuidedBackprop recognises: it hooks ``nn.ReLU`` modules only.

    The demo classifier uses SiLU, for which plain GuidedBackprop would silently equal the gradient.
    Being an ``nn.ReLU`` subclass makes captum apply the guided rule (keep only positive gradients)
    to the gradient that has passed through SiLU, the natural extension of the rule to SiLU.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x)


def eager_effusion_net(classifier: Classifier) -> EffusionNet:
    """An eager ``EffusionNet`` with the TorchScript classifier's weights (and SiLUs captum can guide)."""
    state = classifier.module.state_dict()
    convs = [v for k, v in state.items() if k.startswith("features.") and v.dim() == 5]
    if not convs:
        raise CTCFError("the classifier has no 3D convolution weights under 'features'; it is not an EffusionNet")
    width = int(convs[0].shape[0])
    n_targets = int(state["bias"].shape[0])
    windows = tuple(tuple(w) for w in state.get("input_windows", torch.zeros(0, 2)).tolist())
    net = EffusionNet(
        n_targets=n_targets, width=width, top_k=int(getattr(classifier.module, "top_k", 16)), windows=windows
    )
    state.setdefault("scale", torch.ones(n_targets))  # an EffusionNet saved before the logit had its own gain
    state.setdefault("input_windows", net.input_windows)  # one saved before windows were an option
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise CTCFError(f"the classifier's weights do not fit EffusionNet: {str(e).splitlines()[0]}") from None
    for i, m in enumerate(net.features):
        if isinstance(m, nn.SiLU):
            net.features[i] = _GuidedSiLU()
    return net.eval()


def last_conv(net: nn.Module) -> nn.Module:
    """The last convolution with a spatial kernel (the 1x1 conv after it is the classification head)."""
    convs = [m for m in net.modules() if isinstance(m, nn.Conv3d) and max(m.kernel_size) > 1]
    return convs[-1]


def model_to_volume(attr: torch.Tensor, conv: VolumeConvention, hw: tuple[int, int]) -> np.ndarray:
    """A map in the classifier's input layout -> (D, H, W) on the volume's voxels (the convention's inverse)."""
    x = attr.detach()[0, 0]
    if conv.layout == "NCHWD":
        x = x.permute(2, 0, 1)
    if conv.flip:
        x = torch.flip(x, dims=(-1,))
    if conv.rot90_k % 4:
        x = torch.rot90(x, -conv.rot90_k, dims=(-2, -1))
    if tuple(x.shape[-2:]) != tuple(hw):
        x = F.interpolate(x[:, None], size=hw, mode="bilinear", align_corners=False)[:, 0]
    return x.float().numpy()


def saliency_maps(classifier: Classifier, hu: np.ndarray, index: int = 0) -> dict[str, np.ndarray]:
    """Non-negative (D, H, W) maps of every method in ``METHODS`` for the input volume (window clipped)."""
    from captum.attr import GuidedBackprop, InputXGradient, LayerAttribution, LayerGradCam, Saliency

    net = eager_effusion_net(classifier)
    conv = classifier.convention
    t = torch.as_tensor(hu, dtype=torch.float32).clamp(conv.window.low, conv.window.high)
    x = conv.to_model(t).detach()
    hw = tuple(hu.shape[-2:])
    maps = {}
    with warnings.catch_warnings():  # captum warns that it sets hooks; expected here
        warnings.simplefilter("ignore", UserWarning)
        maps["Saliency"] = Saliency(net).attribute(x.clone(), target=index, abs=True)
        maps["InputXGradient"] = InputXGradient(net).attribute(x.clone(), target=index).abs()
        maps["GuidedBackprop"] = GuidedBackprop(net).attribute(x.clone(), target=index).abs()
        cam = LayerGradCam(net, last_conv(net)).attribute(x.clone(), target=index, relu_attributions=True)
        spatial = x.shape[2:]
        maps["GradCAM"] = LayerAttribution.interpolate(cam, tuple(spatial), interpolate_mode="trilinear").clamp(min=0)
    return {k: np.abs(model_to_volume(v, conv, hw)) for k, v in maps.items()}
