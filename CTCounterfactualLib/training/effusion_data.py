"""Effusion classifier data on real chest CTs: patients on the chest grid, and each with simulated effusions on the
classifier's grid (the CT in model units and the fluid fraction), one family per seed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from CTCounterfactualLib.data.chest_grid import load_chest, resample_chest
from CTCounterfactualLib.data.confounders import simulate_confounder
from CTCounterfactualLib.data.demo_ct import DEMO_CT, ChestCT, load_demo_ct
from CTCounterfactualLib.data.effusion import family_of, simulate_effusion
from CTCounterfactualLib.data.lungs import ChestLungs
from CTCounterfactualLib.training.classifier import EFFUSION_CONVENTION

BUNDLED = "bundled"  # the patient path that stands for the bundled demo CT with its labels
CONFOUNDERS_PER_PATIENT = 9  # CTs without fluid but with a lung mass or dependent atelectasis, per patient


@dataclass
class Patient:
    """A real chest CT on the chest grid (128 x 128, 5 mm slices) with its lungs, and on the classifier's grid."""

    name: str
    ct: ChestCT
    lungs: ChestLungs
    x: torch.Tensor  # (1, D, 64, 64) model units: the CT without fluid
    confounders: list[torch.Tensor]  # the same CT without fluid but with a mass or dependent atelectasis

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.ct.geometry.spacing)) / 1000


@dataclass
class FluidSample:
    """One simulated effusion of one patient on the classifier's grid."""

    patient: str
    seed: int
    family: str
    volume_ml: float
    x: torch.Tensor  # (1, D, 64, 64) model units
    mask: torch.Tensor  # (1, D, 64, 64) fluid fraction (area-resampled)


def patient_name(path: str) -> str:
    """A short name for a CT path: its folder for a DICOM folder or a generic file name, else the file's stem."""
    if path == BUNDLED:
        return "LIDC-IDRI-0001"
    p = Path(path)
    stem = p.name.split(".")[0]
    return p.parent.name if p.is_dir() or stem in ("ct", "image", "dicom") else stem


def to_classifier_grid(hu: np.ndarray) -> torch.Tensor:
    """(D, H, W) HU -> (1, D, 64, 64) in the classifier's input units."""
    return EFFUSION_CONVENTION.to_model(torch.as_tensor(hu, dtype=torch.float32).clamp(-1000, 1000))[0]


def mask_to_grid(fraction: np.ndarray) -> torch.Tensor:
    """(D, H, W) fluid fraction -> (1, D, 64, 64), area-resampled (a fraction again)."""
    size = EFFUSION_CONVENTION.size
    return F.interpolate(torch.as_tensor(fraction, dtype=torch.float32)[None], size=(size, size), mode="area")


def load_patient(path: str) -> Patient:
    """``path`` (a CT file or DICOM folder, or ``BUNDLED``) resampled to the chest grid, with its lungs."""
    if path == BUNDLED:
        demo = load_demo_ct()
        ct = resample_chest(demo.hu, demo.geometry, demo.labels, name=DEMO_CT.name)
    else:
        ct = load_chest(path)
    lungs = ChestLungs.of(ct.hu, ct.geometry, ct.labels)
    confounders = [
        to_classifier_grid(simulate_confounder(ct.hu, lungs, seed).hu) for seed in range(CONFOUNDERS_PER_PATIENT)
    ]
    return Patient(patient_name(path), ct, lungs, to_classifier_grid(ct.hu), confounders)


def fluid_sample(patient: Patient, seed: int, family: str | None = None) -> FluidSample:
    """Effusion ``seed`` (its own family unless ``family``) on ``patient``."""
    ct = patient.ct
    sim = simulate_effusion(ct.hu, ct.geometry, seed, ct.labels, family=family, lungs=patient.lungs)
    return FluidSample(
        patient.name, seed, sim.params.family, sim.volume_ml, to_classifier_grid(sim.hu), mask_to_grid(sim.fraction)
    )


def fluid_samples(patient: Patient, seeds: list[int], families: tuple[str, ...] | None = None) -> list[FluidSample]:
    """The effusions ``seeds`` of ``patient`` whose family is one of ``families`` (all when None)."""
    return [fluid_sample(patient, s) for s in seeds if families is None or family_of(s) in families]
