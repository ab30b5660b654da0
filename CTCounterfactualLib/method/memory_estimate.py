"""Will a run fit? Peak-memory estimate, available memory, and the decode batch size that fits.

The engine's work comes in phases that do not overlap: one classifier backward on the whole volume, then the
decoder's vector-Jacobian products one batch at a time, then the lambda searches. So the estimate is

    peak = BASE + N_VOLUME * volume + latents + max(K_CLASSIFIER * classifier, K_DECODER * batch * decoder,
                                                    N_FRAME * frame)

- ``volume``: one float array of the whole CT (slices x rows x cols) in the run's dtype; the engine keeps
  several alive (input, reconstruction, its working copy, the volume gradient, heatmap, counterfactual, the
  outputs).
- ``classifier``: the bytes autograd saves for one classifier forward on the whole volume (probed on a few
  slices, scaled by depth) plus LARGEST_FACTOR times the largest saved tensor (the gradients created beside it).
- ``decoder``: the same for decoding one slice; the streamed latent gradient holds one batch of it
  (``--faithful`` holds a whole chunk).
- ``frame``: the slices one search moves (the chunk in ``scan``, the range in ``joint``): the current, previous
  and counterfactual frames and the heatmap accumulator.

The constants come from measured peaks (``bench/fit_memory.py``: peak RSS of ``explain`` in fresh processes for
the tiny and the bundled demo models at several depths, sizes, modes and batch sizes, and one forward + backward
of a random Merlin-sized I3ResNet-152; its table is in ``bench/README.md``). Peak RSS on CPU also holds what the
C allocator keeps of freed arrays, so the estimate is good to a factor of about 1.5, not to the MiB.

Probes run on PyTorch's ``meta`` device (shapes only, no arithmetic, no copy of the weights) when the model is
a plain ``nn.Module``; TorchScript models are probed for real on a few slices. On CUDA the parameters count too
(they are moved there); on CPU they are already loaded when the available memory is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call

from CTCounterfactualLib.errors import CTCFError, OutOfMemory, last_line
from CTCounterfactualLib.models.autoencoder import SliceAutoencoder
from CTCounterfactualLib.models.classifier import Classifier
from CTCounterfactualLib.models.oom import is_out_of_memory  # noqa: F401 - also imported from here
from CTCounterfactualLib.params import DEFAULT_CHUNK_SIZE

MIB = 2**20
# Fitted by bench/fit_memory.py (bench/README.md has the measurements): estimates within 0.79x-1.60x of the peaks.
BASE_BYTES = 50 * MIB
N_VOLUME = 9.0
N_FRAME = 0.0  # not separable from N_VOLUME in the measurements (a search moves at most the whole volume)
K_CLASSIFIER = 1.35  # the largest of three measurements on a random I3ResNet-152 (1.01-1.34)
K_DECODER = 0.8
# the backward of the largest saved tensor creates gradients of its size beside it (an attention matrix: the
# gradients of its softmax, its scaling and its product), and a no-grad forward holds as many transiently
LARGEST_FACTOR = 3.0
HEADROOM = 0.8  # use at most this share of the available memory (the estimate can be ~20 % low)
PROBE_SLICES = 4


@dataclass
class ModelProfile:
    """Per-slice memory facts of an autoencoder + classifier pair, from probes (bytes)."""

    decoder_saved: int  # what autograd saves to decode one slice
    decoder_largest: int  # the largest of those tensors
    classifier_saved: float  # what autograd saves in the classifier forward, per input slice
    classifier_largest: float  # the largest of those tensors, per input slice
    latent_bytes_per_slice: int
    param_bytes: int  # both models' parameters and buffers

    @property
    def decoder_bytes_per_slice(self) -> float:
        """Working memory of one slice's decoder forward + backward."""
        return self.decoder_saved + LARGEST_FACTOR * self.decoder_largest

    @property
    def classifier_bytes_per_slice(self) -> float:
        return self.classifier_saved + LARGEST_FACTOR * self.classifier_largest


@dataclass
class MemoryEstimate:
    total_bytes: int
    parts: dict[str, int]  # fixed, volumes, latents, (parameters,) and the three phases
    batch_size: int
    peak_phase: str  # the phase that sets the peak

    def to_dict(self) -> dict:
        return {
            "estimate_mb": round(self.total_bytes / MIB, 1),
            "parts_mb": {k: round(v / MIB, 1) for k, v in self.parts.items()},
            "peak_phase": self.peak_phase,
            "batch_size": self.batch_size,
        }


class _Decode(nn.Module):
    """``ae.decode(z, hw)`` as a module, so its parameters can be swapped for meta tensors."""

    def __init__(self, ae: SliceAutoencoder, hw: tuple[int, int]):
        super().__init__()
        self.vq, self.convention, self.hw = ae.model, ae.convention, hw

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.convention.from_model(self.vq.decode(z), self.hw)


def _saved_bytes(fn, x: torch.Tensor) -> tuple[int, int]:
    """(total, largest) bytes autograd saves while ``fn(x)`` runs, each storage counted once."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        seen[st._cdata] = max(seen.get(st._cdata, 0), st.nbytes())
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x.requires_grad_(True))
    return sum(seen.values()), max(seen.values(), default=0)


def _probe(module, x: torch.Tensor, dtype: torch.dtype) -> tuple[int, int]:
    """(total, largest) saved bytes of ``module(x)`` in ``dtype``: on the meta device for an ``nn.Module`` (no
    arithmetic, no copy of the weights), else for real in the module's own dtype, rescaled to ``dtype``."""
    if isinstance(module, nn.Module) and not isinstance(module, torch.jit.ScriptModule):
        state = {
            k: torch.empty_like(v, device="meta", dtype=dtype if v.is_floating_point() else v.dtype)
            for k, v in (*module.named_parameters(), *module.named_buffers())
        }
        try:
            return _saved_bytes(lambda t: functional_call(module, state, (t,)), torch.empty_like(x, device="meta"))
        except (RuntimeError, NotImplementedError, TypeError):
            pass  # an op without a meta kernel: measure for real below
    first = next(iter(getattr(module, "parameters", lambda: iter(()))()), None)
    own = first.dtype if first is not None else dtype
    saved = _saved_bytes(module, x.detach().to(first.device if first is not None else "cpu", own).clone())
    scale = torch.empty((), dtype=dtype).element_size() / torch.empty((), dtype=own).element_size()
    return int(saved[0] * scale), int(saved[1] * scale)


def _param_bytes(obj) -> int:
    if not isinstance(obj, nn.Module):
        return 0
    return sum(t.numel() * t.element_size() for t in (*obj.parameters(), *obj.buffers()))


def profile_models(
    ae: SliceAutoencoder,
    classifier: Classifier,
    hw: tuple[int, int],
    dtype: torch.dtype = torch.float32,
    probe_slices: int = PROBE_SLICES,
) -> ModelProfile:
    """Probe the decoder (one slice) and the classifier (``probe_slices`` slices of ``hw``) in ``dtype``."""
    vq = ae.model
    side = ae.convention.size
    lh, lw = (side, side) if side else hw
    ds = vq.downsampling
    z = torch.zeros(1, vq.config.embed_dim, lh // ds, lw // ds, dtype=dtype)
    dec = _probe(_Decode(ae, hw), z, dtype)
    module = classifier.module
    with torch.no_grad():
        x = classifier.convention.to_model(torch.zeros(probe_slices, *hw, dtype=dtype))
    try:
        clf = _probe(module, x, dtype)
    except (RuntimeError, ValueError, IndexError, TypeError) as e:
        if is_out_of_memory(e):
            raise
        raise CTCFError(
            f"{classifier.name} failed on an input of shape {tuple(x.shape)} ({probe_slices} slices of the volume's "
            f"size; {last_line(e)}); check that the volume and the sidecar's convention (size, layout) fit what the "
            "classifier was trained on"
        ) from None
    return ModelProfile(
        decoder_saved=dec[0],
        decoder_largest=dec[1],
        classifier_saved=clf[0] / probe_slices,
        classifier_largest=clf[1] / probe_slices,
        latent_bytes_per_slice=z.numel() * z.element_size(),
        param_bytes=_param_bytes(vq) + _param_bytes(module),
    )


def estimate_peak(
    profile: ModelProfile,
    shape: tuple[int, int, int],
    slices: tuple[int, int],
    mode: str,
    batch_size: int,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    *,
    faithful: bool = False,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> MemoryEstimate:
    """Peak memory of ``explain`` on a (D, H, W) volume, in bytes, with its parts."""
    depth, h, w = shape
    item = torch.empty((), dtype=dtype).element_size()
    slice_bytes = h * w * item
    start, stop = slices
    frame_slices = stop - start if mode == "joint" else min(chunk_size, stop - start)
    graph_slices = min(chunk_size, stop - start) if faithful and mode != "joint" else batch_size
    if faithful and mode == "joint":
        graph_slices = stop - start
    parts = {
        "fixed": BASE_BYTES,
        "volumes": int(N_VOLUME * depth * slice_bytes),
        "latents": int(4 * depth * profile.latent_bytes_per_slice),
    }
    if device.startswith("cuda"):
        parts["parameters"] = profile.param_bytes
    phases = {
        "classifier_backward": int(K_CLASSIFIER * profile.classifier_bytes_per_slice * depth),
        "decoder_batch": int(K_DECODER * graph_slices * profile.decoder_bytes_per_slice),
        "search_frames": int(N_FRAME * frame_slices * slice_bytes),
    }
    peak_phase = max(phases, key=phases.get)
    total = sum(parts.values()) + phases[peak_phase]
    return MemoryEstimate(total, {**parts, **phases}, batch_size, peak_phase)


def _cgroup_limit() -> int | None:
    """Memory left under a cgroup v2 limit (containers), if there is one."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text(encoding="utf-8").strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(int(limit) - used, 0)


def available_memory(device: torch.device | str) -> int | None:
    """Bytes free for this run: CUDA ``mem_get_info`` (plus what PyTorch caches), else the system's available
    RAM (``MemAvailable``, a cgroup limit, or ``sysconf``). None when unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    cg = _cgroup_limit()
    if cg is not None:
        found.append(cg)
    return min(found) if found else None


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / MIB:.0f} MiB"


def choose_batch_size(
    profile: ModelProfile,
    shape: tuple[int, int, int],
    slices: tuple[int, int],
    mode: str,
    requested: int,
    available: int | None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    *,
    faithful: bool = False,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> MemoryEstimate:
    """The estimate for the largest batch size <= ``requested`` that fits in ``HEADROOM * available``.

    Raises :class:`OutOfMemory` (a :class:`CTCFError`) when even batch size 1 does not fit. ``available`` None
    (unknown) means no check: the requested batch size is kept.
    """

    def est(b: int) -> MemoryEstimate:
        return estimate_peak(profile, shape, slices, mode, b, chunk_size, faithful=faithful, device=device, dtype=dtype)

    if available is None:
        return est(requested)
    budget = HEADROOM * available
    lo, hi = 1, requested
    if est(lo).total_bytes > budget:
        need = est(lo)
        big = need.peak_phase if need.parts[need.peak_phase] > need.parts["volumes"] else "volumes"
        hint = "--device cpu, " if device.startswith("cuda") else ""
        raise OutOfMemory(
            f"not enough memory: this run needs about {_gib(need.total_bytes)} even with --batch-size 1 "
            f"(largest part: {big.replace('_', ' ')}, {_gib(need.parts[big])}) but {device} has "
            f"{_gib(available)} available; try {hint}a smaller --slices range or a smaller --chunk-size"
            + (" (or --mode scan)" if mode == "joint" else "")
        )
    while lo < hi:  # the estimate grows with the batch size: binary search for the largest that fits
        mid = (lo + hi + 1) // 2
        if est(mid).total_bytes <= budget:
            lo = mid
        else:
            hi = mid - 1
    return est(lo)


def memory_record(
    estimate: MemoryEstimate, available: int | None, requested: int, device: str, profile: ModelProfile | None = None
) -> dict:
    """What summary.json records about the memory check."""
    rec = {
        **estimate.to_dict(),
        "batch_size_requested": requested,
        "available_mb": None if available is None else round(available / MIB, 1),
        "device": device,
        "constants": {
            "n_volume": N_VOLUME,
            "n_frame": N_FRAME,
            "k_classifier": K_CLASSIFIER,
            "k_decoder": K_DECODER,
            "largest_factor": LARGEST_FACTOR,
        },
    }
    if profile is not None:
        rec["probe_mb_per_slice"] = {
            "decoder": round(profile.decoder_bytes_per_slice / MIB, 3),
            "classifier": round(profile.classifier_bytes_per_slice / MIB, 3),
        }
    return rec


def fit_batch_size(
    shape: tuple[int, int, int],
    ae: SliceAutoencoder,
    classifier: Classifier,
    cfg,
    available: int | None = None,
):
    """Check that ``cfg`` fits before any work: returns (cfg with the largest batch size that fits, the record
    for summary.json). ``available`` (bytes) is measured on the run's device unless given."""
    from CTCounterfactualLib.method.explain import check_request, resolve_device

    slices = check_request(shape[0], cfg)
    device = resolve_device(cfg.device)
    if available is None:
        available = available_memory(device)
    profile = profile_models(ae, classifier, (shape[1], shape[2]), cfg.dtype)
    est = choose_batch_size(
        profile,
        shape,
        slices,
        cfg.mode,
        cfg.batch_size,
        available,
        cfg.chunk_size,
        faithful=cfg.faithful,
        device=str(device),
        dtype=cfg.dtype,
    )
    return replace(cfg, batch_size=est.batch_size), memory_record(est, available, cfg.batch_size, str(device), profile)
