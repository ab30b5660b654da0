"""The slice autoencoder: a taming-compatible VQ-GAN plus its input convention."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from CTCounterfactualLib.errors import CTCFError, last_line, one_line
from CTCounterfactualLib.models.checkpoints import extract_state_dict, load_state_into, read_sidecar, torch_load
from CTCounterfactualLib.models.conventions import HUWindow, SliceConvention
from CTCounterfactualLib.models.vqgan import VQGANConfig, VQModel
from CTCounterfactualLib.paths import require_regular_file

# The published CT VQ-GAN (2023-12-25T10-26-40_ct2_vqgan256_sddd), as its reference wrapper uses it.
PUBLISHED_CT_CONVENTION = SliceConvention(
    window=HUWindow(-1000.0, 1000.0),
    size=256,
    rot90_k=1,
    flip=True,
    input_scale=2.0,
    input_offset=-1.0,
    output_scale=0.25,
    output_offset=0.5,
)

# NHWC on CPU: oneDNN's convolutions run this decoder about 1.5x faster (133 slices at 128 x 128 in
# batches of 8: 6.4 -> 4.3 s on the project's CPU); values move only by float rounding (< 1e-5 of the
# window). A module setting so that bench/bench_fullres.py can measure the NCHW path side by side.
CPU_MEMORY_FORMAT = torch.channels_last


@dataclass
class SliceAutoencoder:
    """Encode [B, H, W] slices in [0, 1] to latents and decode them back (per slice)."""

    model: VQModel
    convention: SliceConvention
    name: str = "autoencoder"

    def encode(self, unit_slices: torch.Tensor) -> torch.Tensor:
        return self.model.encode(self.convention.to_model(unit_slices))

    def decode(self, z: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        return self.convention.from_model(self.model.decode(z), hw)

    @property
    def window(self) -> HUWindow:
        return self.convention.window

    def to(self, device: torch.device | str, dtype: torch.dtype) -> SliceAutoencoder:
        memory_format = CPU_MEMORY_FORMAT if torch.device(device).type == "cpu" else torch.preserve_format
        self.model.to(device=device, dtype=dtype, memory_format=memory_format).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        return self


def infer_vqgan_config(state: dict[str, torch.Tensor], resolution: int = 256) -> VQGANConfig:
    """Recover the architecture from weight shapes (the published model ships no YAML offline).

    ``resolution`` only decides at which level attention sits; the network is fully convolutional.
    """
    try:
        ch = state["encoder.conv_in.weight"].shape[0]
        in_channels = state["encoder.conv_in.weight"].shape[1]
        levels = sorted({int(k.split(".")[2]) for k in state if k.startswith("encoder.down.")})
        ch_mult = tuple(state[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] // ch for i in levels)
        num_res_blocks = len({k.split(".")[4] for k in state if k.startswith("encoder.down.0.block.")})
        attn = tuple(resolution // 2**i for i in levels if f"encoder.down.{i}.attn.0.q.weight" in state)
        n_embed, embed_dim = state["quantize.embedding.weight"].shape
        z_out = state["encoder.conv_out.weight"].shape[0]
        z_channels = state["post_quant_conv.weight"].shape[0]
        out_ch = state["decoder.conv_out.weight"].shape[0]
    except KeyError as e:
        raise CTCFError(f"not a taming VQModel state dict: key {e.args[0]!r} is missing") from None
    return VQGANConfig(
        ch=ch,
        ch_mult=ch_mult,
        num_res_blocks=num_res_blocks,
        attn_resolutions=attn,
        resolution=resolution,
        in_channels=in_channels,
        out_ch=out_ch,
        z_channels=z_channels,
        embed_dim=embed_dim,
        n_embed=n_embed,
        double_z=z_out == 2 * z_channels,
    )


def _config_from_yaml(path: str | os.PathLike) -> tuple[VQGANConfig, dict]:
    p = require_regular_file(path, "taming config")
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
        params = doc["model"]["params"]
        extra = doc.get("ctcf", {}) or {}
        if not isinstance(extra, dict):
            raise TypeError("its 'ctcf' section is not a mapping")
        return VQGANConfig.from_taming(params), extra
    except KeyError as e:
        raise CTCFError(f"cannot read taming config {p}: key {e.args[0]!r} is missing") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError, TypeError, ValueError, AttributeError) as e:
        raise CTCFError(f"cannot read taming config {p}: {one_line(e)}") from None


def _config_from_sidecar(arch, path: str | os.PathLike) -> VQGANConfig:
    """The sidecar's ``architecture``: known VQGANConfig fields of the right type, else a one-line error."""
    name = Path(path).name
    if not isinstance(arch, dict):
        raise CTCFError(f"sidecar of {name}: 'architecture' must be a JSON object (got {arch!r})")
    fields = {f: v for f, v in VQGANConfig().to_dict().items()}
    unknown = sorted(set(arch) - set(fields))
    if unknown:
        raise CTCFError(f"sidecar of {name}: unknown architecture field(s) {unknown}; known fields: {sorted(fields)}")
    values = {}
    for key, value in arch.items():
        default = fields[key]
        if isinstance(default, list):
            ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            value = tuple(value) if ok else value
        elif isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1
        if not ok:
            raise CTCFError(f"sidecar of {name}: architecture field {key!r} has the wrong type or value ({value!r})")
        values[key] = value
    return VQGANConfig(**values)


def _build_model(cfg: VQGANConfig, path: str | os.PathLike) -> VQModel:
    """The VQModel of ``cfg``; an impossible architecture (groups that do not divide channels, ...) is one line."""
    try:
        return VQModel(cfg)
    except (ValueError, TypeError, RuntimeError, ZeroDivisionError) as e:
        raise CTCFError(f"the architecture declared for {Path(path).name} cannot be built: {last_line(e)}") from None


def load_autoencoder(
    path: str | os.PathLike,
    config_path: str | os.PathLike | None = None,
    *,
    convention: SliceConvention | None = None,
    allow_pickle: bool = False,
) -> SliceAutoencoder:
    """Load a VQ-GAN from a taming ``.ckpt`` / state-dict ``.pt``.

    Architecture: the taming YAML if given, else the sidecar JSON's ``architecture``, else inferred
    from the weights. Convention: the argument, else the sidecar/YAML ``convention``; without either the
    file is refused (guessing the published model's 256 x 256 settings gives wrong results without a word).
    ``loss.*`` keys (the GAN discriminator, LPIPS) are ignored.
    """
    obj = torch_load(path, allow_pickle=allow_pickle)
    state = {k: v for k, v in extract_state_dict(obj, path).items() if not k.startswith("loss.")}
    meta = read_sidecar(path) or {}
    if config_path is not None:
        cfg, yaml_meta = _config_from_yaml(config_path)
        meta = {**meta, **yaml_meta}
    elif "architecture" in meta:
        cfg = _config_from_sidecar(meta["architecture"], path)
    else:
        cfg = infer_vqgan_config(state)
    model = _build_model(cfg, path)
    load_state_into(model, state, path)
    if convention is None:
        if "convention" not in meta:
            raise CTCFError(
                f"{Path(path).name} comes without its input convention (no sidecar JSON or config with a "
                "'convention'): give --autoencoder-convention ct-vqgan for the published CT VQ-GAN's (HU -1000..1000, "
                "256 x 256, rot90 + flip), another catalog name, or a JSON file with the convention"
            )
        convention = SliceConvention.from_dict(meta["convention"])
    name = meta.get("name", Path(path).stem)
    return SliceAutoencoder(model.eval(), convention, name=name if isinstance(name, str) else Path(path).stem)
