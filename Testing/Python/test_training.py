"""Training commands on tiny budgets: losses fall, files load back exactly, AUC is computed right."""

from pathlib import Path

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

DATA = Path(__file__).resolve().parents[1] / "Data"
SMALL = {"slices": 12, "size": 64, "spacing_mm": (5.0, 5.0, 10.0)}


def test_autoencoder_training_reduces_loss_and_round_trips(tmp_path):
    slices = collect_slices([1, 2], [], 32, phantom_kwargs=SMALL)
    assert slices.shape == (24, 1, 32, 32) and 0 <= float(slices.min()) and float(slices.max()) <= 1
    cfg = _tiny_vqgan_config()
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


def _tiny_vqgan_config() -> VQGANConfig:
    return VQGANConfig(**{**demo_vqgan_config().__dict__, "ch": 16, "n_embed": 64, "extra": {}})


def test_fine_tuning_keeps_the_init_codebook_unless_told_to_reseed_it():
    from CTCounterfactualLib.models.vqgan import VQModel

    slices = collect_slices([1], [], 32, phantom_kwargs=SMALL)
    init = {k: v.clone() for k, v in VQModel(_tiny_vqgan_config()).state_dict().items()}
    kept = train_autoencoder(slices, _tiny_vqgan_config(), AETrainConfig(steps=0, batch=4, crop=32), init=init)
    for k, v in kept.state_dict().items():
        assert torch.equal(v, init[k]), k
    reseeded = train_autoencoder(
        slices, _tiny_vqgan_config(), AETrainConfig(steps=0, batch=4, crop=32, reseed_codebook=True), init=init
    ).state_dict()
    codebook = "quantize.embedding.weight"
    assert not torch.equal(reseeded[codebook], init[codebook])
    assert all(torch.equal(v, init[k]) for k, v in reseeded.items() if k != codebook)


def test_real_autoencoder_trains_on_the_grid_asked_for_and_registers_it_under_its_name(tmp_path, monkeypatch):
    import SimpleITK as sitk

    import CTCounterfactualLib.training.real_recipes as recipes
    from CTCounterfactualLib.training.ae_grids import REAL_GRID_NAMES

    ct = sitk.ReadImage(str(DATA / "example_ct.nii.gz"))[:, :, 40:42]
    sitk.WriteImage(ct, str(tmp_path / "ct.nrrd"))
    registered = []
    monkeypatch.setattr(recipes, "register", lambda path, name, *rest: registered.append(name))
    tc = AETrainConfig(steps=1, batch=1, crop=32, augment=True)
    info = recipes.real_autoencoder(
        str(tmp_path / "ae.pt"), [str(tmp_path / "ct.nrrd")], None, [str(tmp_path / "ct.nrrd")], tc, True, print, 256
    )
    ae = load_autoencoder(tmp_path / "ae.pt")
    assert ae.convention.size == 256 and ae.model.config.resolution == 256
    assert registered == [REAL_GRID_NAMES[256]] and info["slices"] == 2
    assert set(info["heldout_ct.nrrd"]) == {"mae_hu_body", "slope", "intercept_hu"}


def test_train_autoencoder_passes_grid_codebook_and_rate_through_and_refuses_them_for_phantoms(
    tmp_path, capfd, monkeypatch
):
    from cli_runner import run_main

    import CTCounterfactualLib.training.real_recipes as recipes

    seen = {}

    def record(out, real_cts, init, heldout, tc, catalog, log, size) -> dict:
        seen.update(tc=tc, size=size, init=init)
        return {}

    monkeypatch.setattr(recipes, "real_autoencoder", record)
    argv = ["train-autoencoder", "--out", tmp_path / "ae.pt", "--real-ct", "a.nrrd", "--init", "i.pt"]
    assert run_main([*argv, "--size", "256", "--reseed-codebook", "--lr", "5e-5"]) == 0
    assert seen["size"] == 256 and seen["tc"].reseed_codebook and seen["tc"].lr == 5e-5 and seen["init"] == "i.pt"
    assert run_main(argv) == 0
    assert seen["size"] == 128 and not seen["tc"].reseed_codebook and seen["tc"].lr == AETrainConfig.lr
    capfd.readouterr()
    assert run_main(["train-autoencoder", "--out", tmp_path / "p.pt", "--size", "256"]) == 2
    assert capfd.readouterr().err.strip().splitlines() == [
        "ctcf: error: --size, --init, --reseed-codebook and --lr apply to --real-ct training only"
    ]
