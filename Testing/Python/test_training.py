"""Training commands on tiny budgets: losses fall, files load back exactly, AUC is computed right."""

import numpy as np
import pytest
import torch

from CTCounterfactualLib.models.autoencoder import load_autoencoder
from CTCounterfactualLib.models.classifier import load_classifier
from CTCounterfactualLib.models.vqgan import VQGANConfig
from CTCounterfactualLib.training.autoencoder import (
    DEMO_CONVENTION,
    AETrainConfig,
    collect_slices,
    demo_vqgan_config,
    save_autoencoder,
    train_autoencoder,
)
from CTCounterfactualLib.training.classifier import (
    EFFUSION_CONVENTION,
    ClassifierTrainConfig,
    phantom_dataset,
    roc_auc,
    save_classifier,
    train_classifier,
)

SMALL = {"slices": 12, "size": 64, "spacing_mm": (5.0, 5.0, 10.0)}


def test_autoencoder_training_reduces_loss_and_round_trips(tmp_path):
    slices = collect_slices([1, 2], [], 32, phantom_kwargs=SMALL)
    assert slices.shape == (24, 1, 32, 32) and 0 <= float(slices.min()) and float(slices.max()) <= 1
    cfg = VQGANConfig(**{**demo_vqgan_config().__dict__, "ch": 16, "n_embed": 64, "extra": {}})
    losses = []
    model = train_autoencoder(
        slices,
        cfg,
        AETrainConfig(steps=40, batch=8, crop=32, adv_start=30, lr=1e-3),
        log=lambda step, d: losses.append(d["l1"]),
    )
    assert losses[-1] < 0.7 * losses[0]
    path = save_autoencoder(model, DEMO_CONVENTION, tmp_path / "ae.pt", {"steps": 40})
    ae = load_autoencoder(path)
    assert ae.convention == DEMO_CONVENTION
    for k, v in model.state_dict().items():
        assert torch.equal(ae.model.state_dict()[k], v), k


def test_classifier_training_and_torchscript_round_trip(tmp_path):
    x, y = phantom_dataset(list(range(100, 108)), None, EFFUSION_CONVENTION)
    assert x.shape[0] == 8 and float(y.sum()) == 4
    net = train_classifier(x, y, ClassifierTrainConfig(epochs=2, batch=4))
    path = save_classifier(net, tmp_path / "clf.pt", {"epochs": 2})
    clf = load_classifier(path)
    assert clf.targets == ["pleural effusion"] and clf.convention == EFFUSION_CONVENTION
    with torch.no_grad():
        assert torch.allclose(clf.module(x[:2]), net(x[:2]))


def test_roc_auc():
    labels = np.array([0, 0, 1, 1])
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), labels) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), labels) == 0.0
    assert roc_auc(np.array([0.5, 0.5, 0.5, 0.5]), labels) == pytest.approx(0.5)
    assert roc_auc(np.array([0.1, 0.6, 0.5, 0.9]), labels) == pytest.approx(0.75)
