"""Input conventions: how a model wants its CT, declared per model, applied in one place.

Volumes inside the engine are float tensors shaped (slices, rows, cols) as SimpleITK gives them.
The autoencoder works on [0, 1] images (its HU window); the classifier gets the decoded volume
mapped through its own window and layout. Every mapping here is differentiable.
"""

from __future__ import annotations

import math
import typing
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F

from CTCounterfactualLib.errors import CTCFError

_LAYOUTS = ("NCDHW", "NCHWD")


def _orient(x: torch.Tensor, rot90_k: int, flip: bool) -> torch.Tensor:
    if rot90_k % 4:
        x = torch.rot90(x, rot90_k, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if flip else x


def _unorient(x: torch.Tensor, rot90_k: int, flip: bool) -> torch.Tensor:
    if flip:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, -rot90_k, dims=(-2, -1)) if rot90_k % 4 else x


def _resize(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear with antialiasing, as torchvision's ``Resize`` does on tensors."""
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True)


@dataclass(frozen=True)
class HUWindow:
    """Linear map HU -> [0, 1]: ``(hu - low) / (high - low)``."""

    low: float = -1000.0
    high: float = 1000.0

    def to_unit(self, hu: torch.Tensor) -> torch.Tensor:
        return (hu - self.low) / (self.high - self.low)

    def to_hu(self, unit: torch.Tensor) -> torch.Tensor:
        return unit * (self.high - self.low) + self.low

    @property
    def width(self) -> float:
        return self.high - self.low


@dataclass(frozen=True)
class SliceConvention:
    """How the slice autoencoder wants a slice, and how its output maps back.

    encode: HU -> clip to window -> [0,1] -> rot90(k) then flip(last axis) -> resize to size
    -> x*input_scale + input_offset.  decode: x*output_scale + output_offset -> resize back ->
    undo orientation -> [0,1] (window units).  The published CT VQ-GAN: window -1000..1000,
    size 256, rot90_k 1, flip True, input x*2-1, output (x+2)/4.
    """

    window: HUWindow = HUWindow()
    size: int | None = None
    rot90_k: int = 0
    flip: bool = False
    input_scale: float = 2.0
    input_offset: float = -1.0
    output_scale: float = 0.25
    output_offset: float = 0.5

    def to_model(self, unit_slices: torch.Tensor) -> torch.Tensor:
        """[B, H, W] in [0, 1] -> [B, 1, h, w] model input."""
        x = _orient(unit_slices, self.rot90_k, self.flip)[:, None]
        if self.size:
            x = _resize(x, (self.size, self.size))
        return x * self.input_scale + self.input_offset

    def from_model(self, out: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """[B, 1, h, w] model output -> [B, H, W] in [0, 1] window units, original orientation."""
        x = out * self.output_scale + self.output_offset
        oriented_hw = hw if self.rot90_k % 2 == 0 else (hw[1], hw[0])
        x = _resize(x, oriented_hw)[:, 0]
        return _unorient(x, self.rot90_k, self.flip)

    def resample(self, unit_slices: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """[B, h, w] slices decoded at the model's own grid -> [B, H, W]: the resize ``from_model`` does.

        ``from_model(out, hw) == resample(from_model(out, (size, size)), hw)``: orientation is a permutation,
        so this is the same resize on the same numbers (how the fast path upsamples only what it writes).
        """
        oriented_hw = hw if self.rot90_k % 2 == 0 else (hw[1], hw[0])
        x = _orient(unit_slices, self.rot90_k, self.flip)[:, None]
        return _unorient(_resize(x, oriented_hw)[:, 0], self.rot90_k, self.flip)

    @property
    def output_inverts_input(self) -> bool:
        """Whether the output map undoes the input map (a perfect autoencoder then returns its input)."""
        gain = self.input_scale * self.output_scale
        return abs(gain - 1.0) < 1e-9 and abs(self.input_offset * self.output_scale + self.output_offset) < 1e-9

    def with_output_fit(self, scale: float, offset: float) -> SliceConvention:
        """This convention with ``scale * (its output map) + offset`` as the output map."""
        return replace(self, output_scale=self.output_scale * scale, output_offset=self.output_offset * scale + offset)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["window"] = [self.window.low, self.window.high]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SliceConvention:
        return _build(cls, d, "autoencoder convention")


@dataclass(frozen=True)
class VolumeConvention:
    """How a 3D classifier wants the volume.

    HU -> window to [0,1] (clipped only if ``clip``) -> in-plane resize to ``size`` -> rot90(k)
    and flip on the in-plane axes -> x*input_scale + input_offset -> ``layout`` with batch and
    channel axes: ``NCDHW`` (slices first) or ``NCHWD`` (slices last, as Merlin/I3ResNet).
    """

    window: HUWindow = HUWindow()
    clip: bool = False
    size: int | None = None
    rot90_k: int = 0
    flip: bool = False
    input_scale: float = 1.0
    input_offset: float = 0.0
    layout: str = "NCDHW"

    def __post_init__(self) -> None:
        if self.layout not in _LAYOUTS:
            raise CTCFError(f"classifier layout {self.layout!r} is not one of {', '.join(_LAYOUTS)}")

    def to_model(self, hu_volume: torch.Tensor) -> torch.Tensor:
        """(D, H, W) HU -> classifier input tensor."""
        x = self.window.to_unit(hu_volume)
        if self.clip:
            x = x.clamp(0.0, 1.0)
        if self.size:
            x = _resize(x[None], (self.size, self.size))[0]
        x = _orient(x, self.rot90_k, self.flip) * self.input_scale + self.input_offset
        x = x[None, None]
        return x.permute(0, 1, 3, 4, 2) if self.layout == "NCHWD" else x

    def to_dict(self) -> dict:
        d = asdict(self)
        d["window"] = [self.window.low, self.window.high]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> VolumeConvention:
        return _build(cls, d, "classifier convention")


def _window(value, what: str) -> HUWindow:
    """``[low, high]`` in HU: two finite numbers, low below high."""
    ok = isinstance(value, (list, tuple)) and len(value) == 2
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if not ok or value[0] >= value[1]:
        raise CTCFError(f"{what} field 'window' must be [low, high] in HU with low < high (got {value!r})")
    return HUWindow(float(value[0]), float(value[1]))


def _typed(name: str, value, hint, what: str):
    """``value`` checked against the field's type (float, int, bool, str, or None); CTCFError names the field."""
    args = typing.get_args(hint)
    if value is None and type(None) in args:
        return None
    kind = next((a for a in args if a is not type(None)), hint) if args else hint
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is float and number and math.isfinite(value):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is bool and isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        return value
    expected = {float: "a finite number", int: "an integer", bool: "true or false", str: "a string"}[kind]
    if args:
        expected += " or null"
    raise CTCFError(f"{what} field {name!r} must be {expected} (got {value!r})")


def _build(cls: type, d: dict, what: str):
    """A convention from a JSON dict: unknown fields and wrongly typed values are one-line errors."""
    if not isinstance(d, dict):
        raise CTCFError(f"{what} must be a JSON object of fields (got {d!r})")
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(d) - known)
    if unknown:
        raise CTCFError(f"unknown {what} field(s) {unknown}; known fields: {sorted(known)}")
    hints = typing.get_type_hints(cls)
    values = {k: _window(v, what) if k == "window" else _typed(k, v, hints[k], what) for k, v in d.items()}
    if values.get("size") is not None and values["size"] < 1:
        raise CTCFError(f"{what} field 'size' must be a positive number of pixels or null (got {values['size']})")
    return cls(**values)
