"""Reading weight files: Lightning/taming ``.ckpt``, plain state dicts, JSON sidecars, SHA256."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from CTCounterfactualLib.errors import CTCFError, last_line
from CTCounterfactualLib.file_hash import sha256_of  # noqa: F401 - the loaders' callers import it from here
from CTCounterfactualLib.paths import require_regular_file

if TYPE_CHECKING:  # torch loads in the functions that read weights: sha256_of and the sidecars need none of it
    import torch

_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since 1.6, TorchScript files
_PICKLE_PROTO = b"\x80"  # the legacy format: a pickle, protocol 2 or later


def torch_load(path: str | os.PathLike, *, allow_pickle: bool = False) -> Any:
    """``torch.load`` on CPU, safe (weights only) unless the user trusts the file."""
    import torch

    from CTCounterfactualLib.models.oom import is_out_of_memory

    p = require_regular_file(path, "weights file")
    with open(p, "rb") as f:
        magic = f.read(4)
    if not (magic.startswith(_ZIP_MAGIC) or magic[:1] == _PICKLE_PROTO):
        raise CTCFError(
            f"{p} is not a PyTorch weights file (it starts with {magic!r}, not a zip archive or a pickle); "
            "give the .ckpt/.pt file itself"
        )
    try:
        return torch.load(p, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as e:
        if not allow_pickle:
            raise CTCFError(
                f"{p.name} holds Python objects beyond plain weights; if you trust its source, "
                f"rerun with --trust-checkpoint ({str(e).splitlines()[0]})"
            ) from None
        raise CTCFError(f"cannot read {p} as a PyTorch weights file: {last_line(e)}") from None
    except Exception as e:  # a damaged file can fail anywhere inside the unpickler (KeyError, struct.error, ...)
        if is_out_of_memory(e):
            raise
        raise CTCFError(f"cannot read {p} as a PyTorch weights file ({type(e).__name__}: {last_line(e)})") from None


def extract_state_dict(obj: Any, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict inside a Lightning checkpoint (``state_dict`` key) or a plain one."""
    import torch

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
        if candidate.exists():
            require_regular_file(candidate, "model sidecar")
            try:
                doc = json.loads(candidate.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise CTCFError(f"model sidecar {candidate} is not valid JSON: {e}") from None
            if not isinstance(doc, dict):
                raise CTCFError(f"model sidecar {candidate} must hold a JSON object (got {type(doc).__name__})")
            return doc
    return None
