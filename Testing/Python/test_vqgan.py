"""The VQ-GAN port against taming-transformers' own modules, and checkpoint loading."""

import json

import pytest
import torch
import yaml
from taming.modules.diffusionmodules.model import Decoder as TamingDecoder
from taming.modules.diffusionmodules.model import Encoder as TamingEncoder
from taming.modules.vqvae.quantize import VectorQuantizer as TamingQuantizer

from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.models.autoencoder import PUBLISHED_CT_CONVENTION, infer_vqgan_config, load_autoencoder
from CTCounterfactualLib.models.vqgan import VQGANConfig, VQModel

# taming hard-codes GroupNorm(32), so the cross-check uses 32-channel multiples
DDCONFIG = dict(
    double_z=False,
    z_channels=8,
    resolution=32,
    in_channels=1,
    out_ch=1,
    ch=32,
    ch_mult=[1, 2, 2],
    num_res_blocks=1,
    attn_resolutions=[8],
    dropout=0.0,
)


class TamingVQModel(torch.nn.Module):
    """taming.models.vqgan.VQModel's module layout (its file imports pytorch_lightning, so not imported)."""

    def __init__(self, ddconfig, n_embed, embed_dim):
        super().__init__()
        self.encoder = TamingEncoder(**ddconfig)
        self.decoder = TamingDecoder(**ddconfig)
        self.quantize = TamingQuantizer(n_embed, embed_dim, beta=0.25)
        self.quant_conv = torch.nn.Conv2d(ddconfig["z_channels"], embed_dim, 1)
        self.post_quant_conv = torch.nn.Conv2d(embed_dim, ddconfig["z_channels"], 1)

    def encode(self, x):
        return self.quantize(self.quant_conv(self.encoder(x)))[0]

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z))


@pytest.fixture(scope="module")
def taming_model():
    torch.manual_seed(1)
    m = TamingVQModel(DDCONFIG, n_embed=64, embed_dim=6).eval()
    with torch.no_grad():  # taming initialises the codebook tiny; spread it so quantization is not trivial
        m.quantize.embedding.weight.normal_()
    return m


def test_state_dict_keys_and_outputs_match_taming(taming_model):
    ours = VQModel(VQGANConfig.from_taming({"ddconfig": DDCONFIG, "n_embed": 64, "embed_dim": 6})).eval()
    theirs = taming_model.state_dict()
    assert set(ours.state_dict()) == set(theirs)
    ours.load_state_dict(theirs, strict=True)
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        z_t, z_o = taming_model.encode(x), ours.encode(x)
        # taming returns z + (z_q - z).detach(): equal to the codebook entry up to rounding
        assert torch.allclose(z_t, z_o, atol=1e-5, rtol=0)
        assert z_o.unique().numel() > 4  # several codebook entries are in use
        d_t, d_o = taming_model.decode(z_o), ours.decode(z_o)
        assert (d_t - d_o).abs().max() < 1e-5 * d_t.abs().max()


def test_infer_config_from_state_dict(taming_model):
    cfg = infer_vqgan_config(taming_model.state_dict(), resolution=32)
    assert cfg.ch == 32 and cfg.ch_mult == (1, 2, 2) and cfg.num_res_blocks == 1
    assert cfg.attn_resolutions == (8,)
    assert (cfg.z_channels, cfg.embed_dim, cfg.n_embed) == (8, 6, 64)
    assert (cfg.in_channels, cfg.out_ch, cfg.double_z) == (1, 1, False)


def _save_lightning_ckpt(model, path):
    state = dict(model.state_dict())
    state["loss.discriminator.main.0.weight"] = torch.randn(4, 1, 4, 4)
    state["loss.perceptual_loss.net.slice1.0.weight"] = torch.randn(2, 2, 3, 3)
    torch.save({"state_dict": state, "epoch": 7, "global_step": 1000}, path)


def test_load_lightning_ckpt_without_config(taming_model, tmp_path):
    path = tmp_path / "vq.ckpt"
    _save_lightning_ckpt(taming_model, path)
    # no YAML and no sidecar: architecture inferred; the convention is not guessed, it must be given
    with pytest.raises(CTCFError, match="--autoencoder-convention"):
        load_autoencoder(path)
    ae = load_autoencoder(path, convention=PUBLISHED_CT_CONVENTION)
    assert ae.convention == PUBLISHED_CT_CONVENTION
    for k, v in taming_model.state_dict().items():
        assert torch.equal(ae.model.state_dict()[k], v), k


def test_load_with_taming_yaml(taming_model, tmp_path):
    path = tmp_path / "vq.ckpt"
    _save_lightning_ckpt(taming_model, path)
    doc = {
        "model": {
            "target": "taming.models.vqgan.VQModel",
            "params": {
                "embed_dim": 6,
                "n_embed": 64,
                "ddconfig": DDCONFIG,
                "lossconfig": {"target": "taming.modules.losses.vqperceptual.VQLPIPS"},
            },
        }
    }
    yml = tmp_path / "vq.yaml"
    yml.write_text(yaml.safe_dump(doc), encoding="utf-8")
    ae = load_autoencoder(path, yml, convention=PUBLISHED_CT_CONVENTION)  # a taming YAML has no convention
    assert ae.model.config.attn_resolutions == (8,)
    assert ae.model.config.resolution == 32


def test_sidecar_convention_is_used(taming_model, tmp_path):
    path = tmp_path / "vq.pt"
    torch.save(taming_model.state_dict(), path)
    conv = {"window": [-1200, 400], "size": 32, "rot90_k": 0, "flip": False}
    (tmp_path / "vq.json").write_text(json.dumps({"name": "mine", "convention": conv}), encoding="utf-8")
    ae = load_autoencoder(path)
    assert ae.name == "mine"
    assert (ae.window.low, ae.window.high) == (-1200, 400)
    assert ae.convention.size == 32 and not ae.convention.flip


def test_mismatched_checkpoint_names_first_bad_key(taming_model, tmp_path):
    state = dict(taming_model.state_dict())
    state["decoder.conv_in.weight"] = torch.zeros(3, 3, 3, 3)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    cfg = infer_vqgan_config(taming_model.state_dict(), resolution=32)
    (tmp_path / "bad.json").write_text(json.dumps({"architecture": cfg.to_dict()}), encoding="utf-8")
    with pytest.raises(CTCFError, match="decoder.conv_in.weight"):
        load_autoencoder(path)


def test_not_a_vqgan_state_dict(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CTCFError, match="not a taming VQModel"):
        load_autoencoder(path)


def test_pickled_objects_need_trust(taming_model, tmp_path):
    path = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": taming_model.state_dict(), "hparams": TamingQuantizer(2, 2, 0.25)}, path)
    with pytest.raises(CTCFError, match="trust-checkpoint"):
        load_autoencoder(path)
    assert load_autoencoder(path, allow_pickle=True, convention=PUBLISHED_CT_CONVENTION).model.config.ch == 32
