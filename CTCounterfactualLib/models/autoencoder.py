"""The slice autoencoder: a taming-compatible VQ-GAN plus its input convention."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.models.checkpoints import extract_state_dict, load_state_into, read_sidecar, torch_load
from CTCounterfactualLib.models.conventions import HUWindow, SliceConvention
from CTCounterfactualLib.models.vqgan import VQGANConfig, VQModel

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
        self.model.to(device=device, dtype=dtype).eval()
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
    try:
        doc = yaml.safe_load(Path(path).read_text())
        params = doc["model"]["params"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
        raise CTCFError(f"cannot read taming config {path}: {e}") from None
    return VQGANConfig.from_taming(params), doc.get("ctcf", {}) or {}


def load_autoencoder(
    path: str | os.PathLike,
    config_path: str | os.PathLike | None = None,
    *,
    convention: SliceConvention | None = None,
    allow_pickle: bool = False,
) -> SliceAutoencoder:
    """Load a VQ-GAN from a taming ``.ckpt`` / state-dict ``.pt``.

    Architecture: the taming YAML if given, else the sidecar JSON's ``architecture``, else inferred
    from the weights. Convention: the argument, else the sidecar/YAML ``convention``, else the
    published CT model's. ``loss.*`` keys (the GAN discriminator, LPIPS) are ignored.
    """
    obj = torch_load(path, allow_pickle=allow_pickle)
    state = {k: v for k, v in extract_state_dict(obj, path).items() if not k.startswith("loss.")}
    meta = read_sidecar(path) or {}
    if config_path is not None:
        cfg, yaml_meta = _config_from_yaml(config_path)
        meta = {**meta, **yaml_meta}
    elif "architecture" in meta:
        cfg = VQGANConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["architecture"].items()})
    else:
        cfg = infer_vqgan_config(state)
    if convention is None:
        convention = SliceConvention.from_dict(meta["convention"]) if "convention" in meta else PUBLISHED_CT_CONVENTION
    model = VQModel(cfg)
    load_state_into(model, state, path)
    return SliceAutoencoder(model.eval(), convention, name=meta.get("name", Path(path).stem))
