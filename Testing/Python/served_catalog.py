"""A temporary model catalog whose downloadable files are served by a real HTTP server on 127.0.0.1.

The files are small real models of the published formats: a tiny VQ-GAN as a Lightning-style ``.ckpt`` (with
``loss.*`` keys and pickled training state, as Lightning writes) plus its taming YAML, and a tiny TorchScript
classifier with its JSON sidecar. ``$CTCF_CATALOG`` and ``$CTCF_CACHE_DIR`` point at the temporary catalog and
an empty cache for the test.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from http_fixture import LocalServer, free_port_url, start_server

from CTCounterfactualLib.training.tiny_models import save_tiny_models, tiny_autoencoder

VQ = "tiny_vqgan_published"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Served:
    catalog: Path
    cache: Path
    server: LocalServer
    data: dict[str, bytes]  # file name -> served bytes

    def url(self, name: str) -> str:
        return self.server.url(f"/files/{name}")

    def cached(self, entry: str, name: str) -> Path:
        return self.cache / entry / name

    def place_by_hand(self, entry: str, name: str) -> Path:
        """What a firewalled user does: put the file where the error message says."""
        dest = self.cached(entry, name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(self.data[name])
        return dest

    @staticmethod
    def damage(path: Path) -> None:
        """Flip one byte in the middle (same size)."""
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))


@pytest.fixture(scope="session")
def model_bytes(tmp_path_factory) -> dict[str, bytes]:
    """The served files' bytes (built once per session)."""
    folder = tmp_path_factory.mktemp("served_models")
    _, clf_path = save_tiny_models(folder)
    ae = tiny_autoencoder(0)
    state = dict(ae.model.state_dict())
    state["loss.discriminator.main.0.weight"] = torch.zeros(2, 1, 4, 4)
    # Lightning keeps training state beside the weights; an argparse.Namespace needs full unpickling
    ckpt = {"state_dict": state, "epoch": 7, "hyper_parameters": argparse.Namespace(lr=4.5e-6)}
    torch.save(ckpt, folder / f"{VQ}.ckpt")
    cfg = ae.model.config
    params = {
        "embed_dim": cfg.embed_dim,
        "n_embed": cfg.n_embed,
        "norm_groups": cfg.norm_groups,
        "ddconfig": {
            "double_z": cfg.double_z,
            "z_channels": cfg.z_channels,
            "resolution": cfg.resolution,
            "in_channels": cfg.in_channels,
            "out_ch": cfg.out_ch,
            "ch": cfg.ch,
            "ch_mult": list(cfg.ch_mult),
            "num_res_blocks": cfg.num_res_blocks,
            "attn_resolutions": list(cfg.attn_resolutions),
            "dropout": 0.0,
        },
    }
    (folder / f"{VQ}.yaml").write_text(
        yaml.safe_dump({"model": {"target": "taming.models.vqgan.VQModel", "params": params}}), encoding="utf-8"
    )
    return {
        f"{VQ}.ckpt": (folder / f"{VQ}.ckpt").read_bytes(),
        f"{VQ}.yaml": (folder / f"{VQ}.yaml").read_bytes(),
        "tiny_classifier.pt": clf_path.read_bytes(),
        "tiny_classifier.json": clf_path.with_suffix(".json").read_bytes(),
        "lungmask_like.pth": b"\x00" * 4096 + b"lungmask-like weights",
        "phenotypes.csv": b"phecode,phecode_str\n8,Alpha fever\n8.5,Beta; pleural effusion\n",
    }


def _file(served_url, name: str, data: bytes, *, sha_known: bool, size_known: bool, role: str = "weights", **extra):
    return {
        "name": name,
        "role": role,
        "urls": [served_url(name)],
        "bytes": len(data) if size_known else None,
        "sha256": sha(data) if sha_known else None,
        **extra,
    }


def _classifier_files(served_url, data: dict[str, bytes]) -> list[dict]:
    """The tiny TorchScript classifier and its sidecar, both with known hash and size."""
    return [
        _file(served_url, "tiny_classifier.pt", data["tiny_classifier.pt"], sha_known=True, size_known=True),
        _file(
            served_url,
            "tiny_classifier.json",
            data["tiny_classifier.json"],
            sha_known=True,
            size_known=True,
            role="sidecar",
        ),
    ]


@pytest.fixture
def served(tmp_path, monkeypatch, model_bytes) -> Served:
    data = model_bytes
    server = start_server("good", {f"/files/{n}": b for n, b in data.items()})
    folder = tmp_path / "catalog"
    folder.mkdir()
    bundled = folder / "bundled_classifier.pt"
    bundled.write_bytes(data["tiny_classifier.pt"])
    (folder / "bundled_classifier.json").write_bytes(data["tiny_classifier.json"])
    tiny_convention = tiny_autoencoder(0).convention.to_dict()

    def url(name: str) -> str:
        return server.url(f"/files/{name}")

    real_prefix = sha(data["lungmask_like.pth"])[:8]
    wrong_prefix = ("f" if real_prefix[0] != "f" else "0") + real_prefix[1:]
    models = [
        {
            "name": "bundled-clf",
            "kind": "classifier",
            "file": "bundled_classifier.pt",
            "sha256": sha(data["tiny_classifier.pt"]),
            "bytes": len(data["tiny_classifier.pt"]),
            "targets": ["effusion", "lung size"],
            "convention": {},
            "notes": "a bundled entry in the old format",
        },
        {
            "name": "tiny-vqgan",
            "aliases": [VQ],
            "kind": "autoencoder",
            "format": "taming-ckpt",
            "files": [
                _file(url, f"{VQ}.ckpt", data[f"{VQ}.ckpt"], sha_known=False, size_known=False),
                _file(url, f"{VQ}.yaml", data[f"{VQ}.yaml"], sha_known=False, size_known=True, role="config"),
            ],
            "convention": tiny_convention,
            "license": "test",
        },
        {
            "name": "tiny-clf",
            "kind": "classifier",
            "format": "torchscript",
            "files": [
                *_classifier_files(url, data),
            ],
            "targets": ["Effusion", "Lung Size"],
        },
        {
            "name": "with-targets",
            "kind": "classifier",
            "files": [
                *_classifier_files(url, data),
                _file(url, "phenotypes.csv", data["phenotypes.csv"], sha_known=True, size_known=True, role="targets"),
            ],
            "targets_count": 2,
        },
        {
            "name": "prefixed",
            "kind": "classifier",
            "format": "lungmask-r231",
            "files": [
                _file(
                    url,
                    "lungmask_like.pth",
                    data["lungmask_like.pth"],
                    sha_known=False,
                    size_known=False,
                    sha256_prefix=real_prefix,
                )
            ],
            "targets_count": 1,
        },
        {
            "name": "bad-prefix",
            "kind": "classifier",
            "format": "lungmask-r231",
            "files": [
                _file(
                    url,
                    "lungmask_like.pth",
                    data["lungmask_like.pth"],
                    sha_known=False,
                    size_known=False,
                    sha256_prefix=wrong_prefix,
                )
            ],
        },
        {
            "name": "mirrored",
            "kind": "classifier",
            "files": [
                {
                    "name": "tiny_classifier.pt",
                    "urls": [url("gone.pt"), url("tiny_classifier.pt")],
                    "bytes": None,
                    "sha256": None,
                }
            ],
        },
        {
            "name": "offline",
            "kind": "classifier",
            "files": [{"name": "far_away.pt", "urls": [free_port_url("/far_away.pt")], "bytes": 10, "sha256": None}],
        },
    ]
    catalog = folder / "catalog.json"
    catalog.write_text(json.dumps({"models": models}, indent=2), encoding="utf-8")
    cache = tmp_path / "cache"
    monkeypatch.setenv("CTCF_CATALOG", str(catalog))
    monkeypatch.setenv("CTCF_CACHE_DIR", str(cache))
    yield Served(catalog, cache, server, data)
    server.stop()
