"""Reading weight files: Lightning/taming ``.ckpt``, plain state dicts, JSON sidecars, SHA256."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from CTCounterfactualLib.errors import CTCFError


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA256 hex digest of a file (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def torch_load(path: str | os.PathLike, *, allow_pickle: bool = False) -> Any:
    """``torch.load`` on CPU, safe (weights only) unless the user trusts the file."""
    p = Path(path)
    if not p.is_file():
        raise CTCFError(f"weights file not found: {p}")
    try:
        return torch.load(p, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as e:
        raise CTCFError(
            f"{p.name} holds Python objects beyond plain weights; if you trust its source, "
            f"rerun with --trust-checkpoint ({str(e).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CTCFError(f"cannot read {p} as a PyTorch weights file: {str(e).splitlines()[0]}") from None


def extract_state_dict(obj: Any, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict inside a Lightning checkpoint (``state_dict`` key) or a plain one."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CTCFError(f"{path} does not contain a state dict of tensors")
    return obj


def load_state_into(module: torch.nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Strict load that names the first key that does not fit."""
    own = module.state_dict()
    for key, value in own.items():
        if key not in state:
            raise CTCFError(f"checkpoint {Path(path).name} does not fit the model: missing key {key!r}")
        if tuple(state[key].shape) != tuple(value.shape):
            raise CTCFError(
                f"checkpoint {Path(path).name} does not fit the model: key {key!r} has shape "
                f"{tuple(state[key].shape)}, the model expects {tuple(value.shape)}"
            )
    extra = sorted(set(state) - set(own))
    if extra:
        raise CTCFError(f"checkpoint {Path(path).name} does not fit the model: unexpected key {extra[0]!r}")
    module.load_state_dict(state, strict=True)


def read_sidecar(path: str | os.PathLike) -> dict | None:
    """The JSON next to a model file (``model.pt`` -> ``model.json`` or ``model.pt.json``)."""
    p = Path(path)
    for candidate in (p.with_suffix(".json"), p.with_name(p.name + ".json")):
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text())
            except json.JSONDecodeError as e:
                raise CTCFError(f"model sidecar {candidate} is not valid JSON: {e}") from None
    return None
