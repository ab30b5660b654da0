"""CTCounterfactual engine: Latent Shift counterfactuals for 3D CT classifiers (no Slicer, no Qt)."""

__version__ = "0.1.0"
