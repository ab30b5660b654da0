"""CTCounterfactual engine: Latent Shift counterfactuals for 3D CT classifiers (no Slicer, no Qt)."""

import os

# Idle OpenMP threads sleep instead of spinning (unless the user chose a policy). Read once, when torch's
# OpenMP runtime loads, so it must be set before torch is imported: on a CPU shared with other work, threads
# spinning for a busy core made each decode of the search 6-18x slower (measured; docs/benchmark.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
