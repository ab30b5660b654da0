"""``ctcf demo``: run the engine end to end on the bundled CT.

Until the trained demo models land (phantom + effusion classifier), the demo uses small models
with random weights: it shows every output the engine writes, not a meaningful explanation.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import CTCFError
from .explain import ExplainConfig
from .latent_ops import Progress, _noop
from .pipeline import explain_file
from .search import SearchParams
from .tiny_models import save_tiny_models

REPO = Path(__file__).resolve().parent.parent
BUNDLED_CT = REPO / "Testing" / "Data" / "example_ct.nii.gz"


def run_demo(out_dir: str | os.PathLike, progress: Progress = _noop) -> dict:
    """Write tiny models to ``out/models`` and explain the bundled CT's top 32 slices in ``out``."""
    out = Path(out_dir)
    if not BUNDLED_CT.is_file():
        raise CTCFError(f"bundled CT not found at {BUNDLED_CT}; run the demo from a source checkout")
    ae_path, clf_path = save_tiny_models(out / "models")
    cfg = ExplainConfig(
        target="effusion", slices=(80, 112), chunk_size=8, mode="scan", search=SearchParams(step_size=10.0)
    )
    return explain_file(BUNDLED_CT, out, cfg, autoencoder_path=ae_path, classifier_path=clf_path, progress=progress)
