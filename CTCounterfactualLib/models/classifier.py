"""The classifier interface: a callable volume -> outputs, with its convention and target names."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from CTCounterfactualLib.errors import CTCFError, last_line
from CTCounterfactualLib.models.checkpoints import read_sidecar
from CTCounterfactualLib.models.conventions import VolumeConvention
from CTCounterfactualLib.models.oom import is_out_of_memory


@dataclass
class Classifier:
    """Any callable from the convention's input tensor to a vector of outputs (one per target)."""

    module: Callable[[torch.Tensor], torch.Tensor]
    targets: list[str]
    convention: VolumeConvention = field(default_factory=VolumeConvention)
    apply_sigmoid: bool = True
    threshold: float = 0.5
    name: str = "classifier"

    def target_index(self, target: str | int) -> int:
        """Index of a target given by name (case-insensitive) or by index."""
        if isinstance(target, int) or (isinstance(target, str) and target.strip().lstrip("-").isdigit()):
            i = int(target)
            if not 0 <= i < len(self.targets):
                raise CTCFError(f"target index {i} is out of range: {self.name} has {len(self.targets)} targets")
            return i
        wanted = target.strip().lower()
        for i, name in enumerate(self.targets):
            if name.lower() == wanted:
                return i
        shown = ", ".join(self.targets[:20]) + (" ..." if len(self.targets) > 20 else "")
        raise CTCFError(f"unknown target {target!r} for {self.name}; its targets are: {shown}")

    def outputs(self, hu_volume: torch.Tensor, *, clip: bool = False) -> torch.Tensor:
        """All outputs (after the sigmoid if declared) for a (D, H, W) HU volume."""
        conv = self.convention
        if clip and not conv.clip:
            hu_volume = hu_volume.clamp(conv.window.low, conv.window.high)
        x = conv.to_model(hu_volume)
        out = self._forward(x)
        if isinstance(out, (tuple, list)) and out:
            out = out[0]
        if not isinstance(out, torch.Tensor):
            raise CTCFError(f"{self.name} returned {type(out).__name__}, not a tensor of one output per target")
        out = out.reshape(-1)
        if out.numel() != len(self.targets):
            raise CTCFError(
                f"{self.name} returned {out.numel()} outputs but declares {len(self.targets)} targets; "
                "fix the targets list in its sidecar JSON"
            )
        if not torch.isfinite(out).all():
            raise CTCFError(
                f"{self.name} returned a non-finite output ({out.detach().flatten()[0].item():g}, ...) on an input of "
                f"shape {tuple(x.shape)}; the classifier or its convention is broken"
            )
        return torch.sigmoid(out) if self.apply_sigmoid else out

    def _forward(self, x: torch.Tensor):
        """The module on ``x``; its own failures (shape mismatch, bad layout) become one line naming the input shape."""
        try:
            return self.module(x)
        except (RuntimeError, ValueError, IndexError, TypeError) as e:
            if is_out_of_memory(e):
                raise
            raise CTCFError(
                f"{self.name} failed on an input of shape {tuple(x.shape)} ({last_line(e)}); check that the volume "
                "and the sidecar's convention (size, layout) fit what the classifier was trained on"
            ) from None

    def score(self, hu_volume: torch.Tensor, index: int, *, clip: bool = False) -> torch.Tensor:
        """The prediction for one target (differentiable)."""
        return self.outputs(hu_volume, clip=clip)[index]

    def to(self, device: torch.device | str, dtype: torch.dtype) -> Classifier:
        if isinstance(self.module, torch.nn.Module):
            self.module.to(device=device, dtype=dtype).eval()
            for p in self.module.parameters():
                p.requires_grad_(False)
        return self


def save_torchscript(module: torch.nn.Module, path: str | os.PathLike) -> None:
    """Script and save a classifier module (the file format ``load_classifier`` reads)."""
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; the format is still what users ship
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(module).save(str(path))


def load_classifier(path: str | os.PathLike) -> Classifier:
    """Load a TorchScript classifier with its JSON sidecar (``model.json`` beside ``model.pt``).

    Sidecar: ``{"targets": [...], "apply_sigmoid": true, "threshold": 0.5, "convention": {...}}``.
    """
    p = Path(path)
    if not p.is_file():
        raise CTCFError(f"classifier file not found: {p}")
    meta = read_sidecar(p)
    if meta is None:
        raise CTCFError(
            f"classifier {p.name} has no sidecar JSON ({p.with_suffix('.json').name}) "
            "declaring its targets and convention"
        )
    targets = meta.get("targets")
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
        raise CTCFError(f"sidecar of {p.name} must list its target names (strings) under 'targets'")
    fields = _sidecar_fields(meta, p)
    try:
        with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; the format is still what users ship
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(p), map_location="cpu")
    except (RuntimeError, ValueError) as e:
        raise CTCFError(f"cannot load {p.name} as a TorchScript model: {str(e).splitlines()[0]}") from None
    return Classifier(module=module.eval(), targets=list(targets), **fields)


def _sidecar_fields(meta: dict, p: Path) -> dict:
    """The sidecar's typed fields (convention, apply_sigmoid, threshold, name); a wrong type is a one-line error."""
    apply_sigmoid = meta.get("apply_sigmoid", True)
    threshold = meta.get("threshold", 0.5)
    name = meta.get("name", p.stem)
    if not isinstance(apply_sigmoid, bool):
        raise CTCFError(f"sidecar of {p.name}: 'apply_sigmoid' must be true or false (got {apply_sigmoid!r})")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise CTCFError(f"sidecar of {p.name}: 'threshold' must be a finite number (got {threshold!r})")
    if not isinstance(name, str):
        raise CTCFError(f"sidecar of {p.name}: 'name' must be a string (got {name!r})")
    return {
        "convention": VolumeConvention.from_dict(meta.get("convention", {})),
        "apply_sigmoid": apply_sigmoid,
        "threshold": float(threshold),
        "name": name,
    }
