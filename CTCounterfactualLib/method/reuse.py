"""What one ``explain`` call can hand the next on the same input: the encoded volume and its latent direction.

A warm engine (``ctcf serve``, the Slicer module's engine process) explains the same CT again and again with
another chunk size, search setting or slice range. Encoding, decoding and the classifier's backward do not depend
on those, so they are kept for the last (volume content, models, target, settings that shape them) and used again
while all of these are unchanged. The search never writes into what is kept (it decodes into copies), so a reused
call gives the same result as a fresh one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from CTCounterfactualLib.method.direction import LatentDirection
from CTCounterfactualLib.method.explain import ExplainConfig, check_request, resolve_device
from CTCounterfactualLib.method.memory import reset_peak
from CTCounterfactualLib.models.autoencoder import SliceAutoencoder
from CTCounterfactualLib.models.classifier import Classifier

ENCODING, GRADIENT = "encoding", "gradient"  # what a call reused (``Reuse.reused``)


def volume_digest(hu: np.ndarray) -> str:
    """The content of a volume: shape, dtype and a BLAKE2b of its bytes."""
    data = np.ascontiguousarray(hu)
    digest = hashlib.blake2b(data.view(np.uint8).reshape(-1), digest_size=16).hexdigest()
    return f"{data.shape}/{data.dtype}/{digest}"


def _settings(cfg: ExplainConfig) -> tuple:
    """Everything in ``cfg`` that the encoded volume depends on (not the slice range, chunks or search rules)."""
    return (
        str(cfg.target).lower(),
        cfg.device,
        cfg.dtype,
        cfg.batch_size,
        cfg.faithful,
        cfg.search_resolution,
        cfg.output_map,
        cfg.search.lambda_scale,
        cfg.search.counterfactual,  # the volume the direction is taken at (the input or D(z))
        cfg.search.direction,  # the objective whose gradient it is
        None if cfg.region_mask is None else volume_digest(cfg.region_mask),  # the gradient's mask
    )


@dataclass
class _Kept:
    volume: str
    ae: SliceAutoencoder
    classifier: Classifier
    settings: tuple
    prepared: Any  # explain's prepared request (latents, reconstruction, scoring function)
    directions: dict[tuple[int, int], LatentDirection] = field(default_factory=dict)


class Reuse:
    """Keeps one input's prepared request and its latent direction between ``explain`` calls (pass the same
    instance to each). ``reused`` lists what the latest call took from here (``ENCODING``, ``GRADIENT``)."""

    def __init__(self) -> None:
        self._kept: _Kept | None = None
        self.reused: list[str] = []

    def prepared(
        self, hu: np.ndarray, ae: SliceAutoencoder, classifier: Classifier, cfg: ExplainConfig, compute: Callable
    ):
        """The prepared request of ``hu``: kept from an earlier call on the same volume, models and settings (the
        request is still checked and the models put on its device), else ``compute()``, which is then kept."""
        self.reused = []
        volume = volume_digest(hu)
        if self.holds(hu, ae, classifier, cfg, volume):
            kept = self._kept
            start, stop = check_request(hu.shape[0], cfg)
            device = resolve_device(cfg.device)
            reset_peak(device)
            ae.to(device, cfg.dtype)  # a request for another device in between may have moved them
            classifier.to(device, cfg.dtype)
            self.reused.append(ENCODING)
            return replace(kept.prepared, start=start, stop=stop)
        self._kept = None  # let go of the old tensors before making new ones
        prepared = compute()
        self._kept = _Kept(volume, ae, classifier, _settings(cfg), prepared)
        return prepared

    def holds(
        self, hu: np.ndarray, ae: SliceAutoencoder, classifier: Classifier, cfg: ExplainConfig, volume: str = ""
    ) -> bool:
        """Whether a call with these arguments takes the encoding from here (``volume``: ``hu``'s digest if known)."""
        kept = self._kept
        return bool(
            kept
            and kept.ae is ae
            and kept.classifier is classifier
            and kept.settings == _settings(cfg)
            and kept.volume == (volume or volume_digest(hu))
        )

    def direction(self, prepared, compute: Callable[[], LatentDirection]) -> LatentDirection:
        """The latent direction over ``prepared``'s slice range: kept for this range, else ``compute()`` (kept)."""
        kept = self._kept
        rows = (prepared.start, prepared.stop)
        if kept is None or not self.reused:  # nothing kept, or the prepared request was made just now
            direction = compute()
            if kept is not None:
                kept.directions = {rows: direction}
            return direction
        if rows in kept.directions:
            self.reused.append(GRADIENT)
            return kept.directions[rows]
        kept.directions = {rows: compute()}  # one range at a time: a direction is as large as the latents
        return kept.directions[rows]
