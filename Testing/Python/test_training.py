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
    BlurDown3d,
    ClassifierTrainConfig,
    EffusionNet,
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


def _input_weights(layer: torch.nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    """How much each input voxel contributes to the summed output: the layer's adjoint applied to ones."""
    x = torch.ones(shape, requires_grad=True)
    layer(x).sum().backward()
    return x.grad[0, 0]


def test_blur_down_weighs_every_slice_equally_where_a_strided_conv_alternates():
    shape = (1, 1, 16, 16, 16)
    blur = _input_weights(BlurDown3d((2, 2, 2)), shape)[1:-1, 1:-1, 1:-1]  # the replicate-padded border differs
    assert blur.shape == (14, 14, 14) and torch.allclose(blur, torch.full_like(blur, 1 / 8))
    conv = torch.nn.Conv3d(1, 1, 3, stride=2, padding=1, bias=False)
    torch.nn.init.constant_(conv.weight, 1.0)
    strided = _input_weights(conv, shape)
    assert strided[1, 1, 1] == 8 and strided[2, 2, 2] == 1  # odd voxels count twice per axis, even ones once
    assert BlurDown3d((1, 2, 2))(torch.zeros(2, 3, 7, 16, 10)).shape == (2, 3, 7, 8, 5)


def test_effusion_net_has_no_slice_checkerboard_in_its_gradient():
    torch.manual_seed(0)
    net = EffusionNet().eval()
    x = torch.zeros(1, 1, 24, 32, 32, requires_grad=True)
    net(x).sum().backward()
    per_slice = x.grad[0, 0, 2:-2].sum(dim=(1, 2))
    # neighbouring slices get gradients of the same size: no even/odd pattern from the downsampling
    ratio = per_slice[0::2].abs().mean() / per_slice[1::2].abs().mean()
    assert 0.8 < float(ratio) < 1.25


def test_roc_auc():
    labels = np.array([0, 0, 1, 1])
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), labels) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), labels) == 0.0
    assert roc_auc(np.array([0.5, 0.5, 0.5, 0.5]), labels) == pytest.approx(0.5)
    assert roc_auc(np.array([0.1, 0.6, 0.5, 0.9]), labels) == pytest.approx(0.75)


def test_effusion_net_window_channel_separates_fluid_from_muscle_and_survives_torchscript(tmp_path):
    from CTCounterfactualLib.evaluation.saliency import eager_effusion_net
    from CTCounterfactualLib.training.classifier import SOFT_TISSUE_WINDOW_HU, hu_window_in_model_units

    assert hu_window_in_model_units((-1000.0, 1000.0)) == pytest.approx((-1.0, 1.0))  # the whole input range
    window = hu_window_in_model_units(SOFT_TISSUE_WINDOW_HU)
    torch.manual_seed(0)
    net = EffusionNet(windows=(window,)).eval()
    hu = torch.tensor([-1000.0, -135.0, 15.0, 50.0, 215.0, 1000.0]).reshape(1, 1, 1, 1, 6)
    x = EFFUSION_CONVENTION.window.to_unit(hu) * EFFUSION_CONVENTION.input_scale + EFFUSION_CONVENTION.input_offset
    channels = net.windowed(x)
    assert channels.shape == (1, 2, 1, 1, 6) and torch.equal(channels[:, 0], x[:, 0])
    soft = channels[0, 1, 0, 0]
    assert soft[0] == -1 and soft[5] == 1  # clipped outside the window
    assert soft[[1, 4]].tolist() == pytest.approx([-1, 1], abs=1e-5)  # its edges
    # fluid (15 HU) and muscle (50 HU): 0.035 apart on the input, 0.2 in the window channel
    assert float(soft[3] - soft[2]) == pytest.approx(2 * 35 / 350, rel=1e-5)
    assert float(x[0, 0, 0, 0, 3] - x[0, 0, 0, 0, 2]) < 0.04
    vol = torch.randn(1, 1, 8, 64, 64) * 0.3
    path = save_classifier(net, tmp_path / "windowed.pt", {})
    loaded = load_classifier(path)
    with torch.no_grad():
        assert torch.allclose(loaded.module(vol), net(vol), atol=1e-6)
        assert torch.allclose(eager_effusion_net(loaded)(vol), net(vol), atol=1e-6)  # captum's copy keeps the window
        state = net.state_dict() | {"input_windows": torch.tensor([[0.0, 0.1]])}
        other = EffusionNet(windows=((0.0, 0.1),)).eval()
        other.load_state_dict(state)
        assert not torch.allclose(other(vol), net(vol))  # the same weights through another window: the window counts
