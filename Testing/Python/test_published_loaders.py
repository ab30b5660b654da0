"""Loaders for the paper's published classifiers (lungmask R231, Merlin I3ResNet-152) and format plug-ins.

Small random models with the published files' key layout are saved in the published formats and
loaded back; the full-size architectures are built on the meta device and checked against facts
from lungmask's and Merlin's sources and torchvision's published ResNet-152 size.
"""

import csv
import json
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.models.formats import classifier_formats, open_classifier
from CTCounterfactualLib.models.lungmask import LUNGMASK_CONVENTION, LungmaskUNet, resize_like_ndimage_zoom
from CTCounterfactualLib.models.merlin import MERLIN_CONVENTION, MerlinI3ResNet

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY_MERLIN = {"layers": (1, 1, 1, 1), "stem_width": 4, "num_classes": 6, "embed_dim": 8}


def _randomized(module: torch.nn.Module, seed: int, scale: float = 0.2) -> dict[str, torch.Tensor]:
    """Every parameter and buffer filled with random values (so equality checks mean something)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in module.state_dict().items():
        if value.dtype.is_floating_point:
            new = torch.randn(value.shape, generator=g) * scale
            if key.endswith("running_var"):
                new = new.abs() + 0.5
        else:
            new = torch.randint(0, 1000, value.shape, generator=g, dtype=value.dtype)
        state[key] = new
    module.load_state_dict(state)
    return {k: v.clone() for k, v in state.items()}


def _tiny_unet_file(tmp_path: pathlib.Path, seed: int = 0, scale: float = 0.2, **save_kw) -> tuple[pathlib.Path, dict]:
    state = _randomized(LungmaskUNet(depth=3, wf=2), seed, scale)
    path = tmp_path / "unet_tiny.pth"
    torch.save(state, path, **save_kw)
    return path, state


def _tiny_merlin_clip_file(tmp_path: pathlib.Path, seed: int = 0) -> tuple[pathlib.Path, dict]:
    """A whole-CLIP-model state dict as Merlin ships it: image keys prefixed, text encoder junk beside."""
    state = _randomized(MerlinI3ResNet(**TINY_MERLIN), seed)
    clip = {f"encode_image.i3_resnet.{k}": v for k, v in state.items()}
    clip["encode_text.text_encoder.embeddings.word_embeddings.weight"] = torch.randn(50, 8)
    clip["encode_text.linear_layer.weight"] = torch.randn(4, 8)
    clip["logit_scale"] = torch.tensor(1.0)
    path = tmp_path / "merlin_tiny.pt"
    torch.save(clip, path)
    return path, state


def _assert_bit_exact(module: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    loaded = module.state_dict()
    assert set(loaded) == set(saved)
    for key, value in saved.items():
        assert loaded[key].dtype == value.dtype and torch.equal(loaded[key], value), key


# --- lungmask R231 -------------------------------------------------------------------------------


def _lungmask_keys(depth: int = 5) -> list[str]:
    """lungmask's resunet.py key layout, written out from its module order."""
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]

    def conv_block(prefix: str) -> list[str]:
        keys = [f"{prefix}residual_input_conv.{p}" for p in ("weight", "bias")]
        keys += [f"{prefix}residual_batchnorm.{p}" for p in bn]
        for conv, norm in ((0, 2), (3, 5)):
            keys += [f"{prefix}block.{conv}.{p}" for p in ("weight", "bias")]
            keys += [f"{prefix}block.{norm}.{p}" for p in bn]
        return keys

    keys = [k for i in range(depth) for k in conv_block(f"down_path.{i}.")]
    for j in range(depth - 1):
        keys += [f"up_path.{j}.residual_input_conv.{p}" for p in ("weight", "bias")]
        keys += [f"up_path.{j}.residual_batchnorm.{p}" for p in bn]
        keys += [f"up_path.{j}.up.1.{p}" for p in ("weight", "bias")]
        keys += conv_block(f"up_path.{j}.conv_block.")
    return keys + ["last.weight", "last.bias"]


def _r231_parameter_count() -> int:
    """Parameters of UNet(depth=5, wf=6, batch_norm, upsample, 3 classes), counted by hand."""

    def conv(cin: int, cout: int, k: int) -> int:
        return cin * cout * k * k + cout

    def block(cin: int, cout: int) -> int:  # residual 1x1 conv + BN, two 3x3 convs + BNs
        return conv(cin, cout, 1) + 2 * cout + conv(cin, cout, 3) + 2 * cout + conv(cout, cout, 3) + 2 * cout

    widths = [64, 128, 256, 512, 1024]
    total = block(1, 64) + sum(block(a, b) for a, b in zip(widths, widths[1:], strict=False))
    for cin, cout in zip(widths[:0:-1], widths[-2::-1], strict=True):
        total += conv(cin, cout, 1) + 2 * cout + conv(cin, cout, 1) + block(cin, cout)
    return total + conv(64, 3, 1)


def test_full_size_r231_has_lungmasks_keys_shapes_and_size():
    with torch.device("meta"):
        unet = LungmaskUNet()
    state = unet.state_dict()
    assert list(state) == _lungmask_keys()  # names and order (lungmask reads n_classes from the last value)
    assert tuple(state["down_path.0.block.0.weight"].shape) == (64, 1, 3, 3)
    assert tuple(state["down_path.4.block.3.weight"].shape) == (1024, 1024, 3, 3)
    assert tuple(state["up_path.0.up.1.weight"].shape) == (512, 1024, 1, 1)
    assert tuple(state["up_path.3.conv_block.block.0.weight"].shape) == (64, 128, 3, 3)
    assert tuple(state["last.weight"].shape) == (3, 64, 1, 1)
    n = sum(p.numel() for p in unet.parameters())
    assert n == _r231_parameter_count()
    assert n == 31_054_275  # lungmask's own resunet.UNet with get_model's arguments counts the same


def test_lungmask_state_dict_loads_bit_exactly_and_is_deterministic(tmp_path):
    path, saved = _tiny_unet_file(tmp_path)
    clf = open_classifier(path, "lungmask-r231")
    _assert_bit_exact(clf.module.unet, saved)
    assert clf.targets == ["lung size"] and clf.apply_sigmoid is False
    assert clf.convention == LUNGMASK_CONVENTION
    hu = torch.rand(3, 20, 24) * 1600 - 1100
    with torch.no_grad():
        first, second = clf.outputs(hu), clf.outputs(hu)
    assert torch.equal(first, second)
    assert 0.0 <= float(first) <= 1.0


def test_lungmask_legacy_file_and_missing_bn_counters_load(tmp_path):
    # 2019 release files predate torch's zip format; very old ones lack BatchNorm counters.
    path, saved = _tiny_unet_file(tmp_path, seed=3, _use_new_zipfile_serialization=False)
    _assert_bit_exact(open_classifier(path, "lungmask-r231").module.unet, saved)
    without = {k: v for k, v in saved.items() if not k.endswith("num_batches_tracked")}
    torch.save(without, path)
    loaded = open_classifier(path, "lungmask-r231").module.unet.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in without.items())


def _zoom_linear(img: np.ndarray, size: int) -> np.ndarray:
    """scipy.ndimage.zoom(order=1) to size x size: output pixel o samples input o*(n-1)/(size-1)."""
    out = img.astype(np.float64)
    for axis in (0, 1):
        n = out.shape[axis]
        pos = np.arange(size) * (n - 1) / (size - 1)
        lo = np.minimum(np.floor(pos).astype(int), n - 2)
        frac = pos - lo
        a, b = np.take(out, lo, axis=axis), np.take(out, lo + 1, axis=axis)
        shape = [1, 1]
        shape[axis] = size
        out = a * (1 - frac.reshape(shape)) + b * frac.reshape(shape)
    return out


def test_slice_resize_is_ndimage_zoom_order_1():
    img = torch.rand(1, 1, 20, 24, dtype=torch.float64)
    got = resize_like_ndimage_zoom(img, 256)[0, 0].numpy()
    np.testing.assert_allclose(got, _zoom_linear(img[0, 0].numpy(), 256), rtol=0, atol=1e-12)


def test_lung_size_is_one_minus_mean_no_lung_probability(tmp_path):
    path, _ = _tiny_unet_file(tmp_path, seed=1, scale=1.0)  # large weights: the output depends on the input
    clf = open_classifier(path, "lungmask-r231").to("cpu", torch.float64)
    clf.module.batch = 2  # three slices: two batches
    g = torch.Generator().manual_seed(5)
    hu = torch.rand(3, 20, 24, generator=g, dtype=torch.float64) * 2200 - 1300
    with torch.no_grad():
        got = float(clf.outputs(hu)[0])

    unet = LungmaskUNet(depth=3, wf=2)
    unet.load_state_dict(torch.load(path))
    unet.double().eval()
    p_none = []
    for s in hu.numpy():
        x = (np.clip(s, -1024, 600) + 1024) / 1624
        x = torch.as_tensor(_zoom_linear(x, 256))[None, None]
        with torch.no_grad():
            p_none.append(torch.softmax(unet(x), dim=1)[0, 0].numpy())
    expected = 1.0 - float(np.mean(p_none))
    assert got == pytest.approx(expected, rel=0, abs=1e-10)


def _assert_gradient_reaches_volume_and_checkpointing_is_exact(clf, hu: torch.Tensor, target: int) -> None:
    """d score / d HU is finite and non-zero, and the same with and without activation checkpointing."""
    grads = []
    for use_checkpoint in (True, False):
        clf.module.checkpoint = use_checkpoint
        (grad,) = torch.autograd.grad(clf.score(hu, target), hu)
        grads.append(grad)
    assert torch.isfinite(grads[0]).all() and grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-14)


def test_lung_size_gradient_reaches_the_volume_and_checkpointing_is_exact(tmp_path):
    path, _ = _tiny_unet_file(tmp_path, seed=2)
    clf = open_classifier(path, "lungmask-r231").to("cpu", torch.float64)
    clf.module.batch = 2
    hu = (torch.rand(3, 16, 16, dtype=torch.float64) * 1400 - 1000).requires_grad_()
    _assert_gradient_reaches_volume_and_checkpointing_is_exact(clf, hu, 0)


def test_lungmask_mismatch_and_wrong_file_are_one_line_errors(tmp_path):
    path, saved = _tiny_unet_file(tmp_path)
    bad = dict(saved)
    bad["down_path.1.block.3.weight"] = torch.zeros(8, 8, 3, 1)
    torch.save(bad, path)
    with pytest.raises(CTCFError, match=r"key 'down_path\.1\.block\.3\.weight' has shape \(8, 8, 3, 1\)"):
        open_classifier(path, "lungmask-r231")
    torch.save({"conv.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CTCFError, match="not a lungmask U-net state dict"):
        open_classifier(path, "lungmask-r231")


# --- Merlin I3ResNet-152 -------------------------------------------------------------------------


def test_full_size_i3resnet152_matches_merlins_checkpoint_layout():
    with torch.device("meta"):
        model = MerlinI3ResNet()
    state = model.state_dict()
    layers = (3, 8, 36, 3)
    bn_keys, blocks = 5, sum(layers)
    # stem conv + BN, per block 3 convs + 3 BNs, a downsample conv + BN per layer, two 1x1x1 heads
    assert len(state) == (1 + bn_keys) + blocks * 3 * (1 + bn_keys) + 4 * (1 + bn_keys) + 4
    assert tuple(state["conv1.weight"].shape) == (64, 3, 3, 7, 7)
    assert tuple(state["layer1.0.downsample.0.weight"].shape) == (256, 64, 1, 1, 1)
    assert tuple(state["layer3.35.conv2.weight"].shape) == (256, 256, 3, 3, 3)
    assert tuple(state["layer4.0.downsample.0.weight"].shape) == (2048, 1024, 1, 1, 1)
    assert tuple(state["layer4.2.conv3.weight"].shape) == (2048, 512, 1, 1, 1)
    assert tuple(state["classifier.weight"].shape) == (1692, 2048, 1, 1, 1)
    assert tuple(state["classifier.bias"].shape) == (1692,)
    assert tuple(state["contrastive_head.weight"].shape) == (512, 2048, 1, 1, 1)
    assert "layer3.36.conv1.weight" not in state and "layer1.1.downsample.0.weight" not in state
    assert not [k for k in state if ".conv" in k and k.endswith(".bias")] and "conv1.bias" not in state
    # torchvision's ResNet-152 has 60,192,808 parameters; inflation triples every 3x3 conv and the stem,
    # the 1000-way fc goes, the 1692-phecode and 512-d contrastive 1x1x1 heads come.
    conv3x3 = sum(n * 9 * w * w for n, w in zip(layers, (64, 128, 256, 512), strict=True))
    expected = 60_192_808 - (2048 * 1000 + 1000) + 2 * (64 * 3 * 49) + 2 * conv3x3
    expected += 2048 * 1692 + 1692 + 2048 * 512 + 512
    assert sum(p.numel() for p in model.parameters()) == expected


def test_merlin_clip_checkpoint_loads_bit_exactly_without_the_text_encoder(tmp_path):
    path, saved = _tiny_merlin_clip_file(tmp_path)
    clf = open_classifier(path, "merlin-i3resnet152")
    _assert_bit_exact(clf.module, saved)
    assert clf.targets == [f"phecode_{i}" for i in range(6)] and clf.apply_sigmoid
    assert clf.convention == MERLIN_CONVENTION
    hu = torch.rand(4, 30, 26) * 2000 - 1000
    with torch.no_grad():
        probs, again = clf.outputs(hu), clf.outputs(hu)
        logits = clf.module(MERLIN_CONVENTION.to_model(hu))
    assert torch.equal(probs, again)
    assert tuple(logits.shape) == (1, 6)
    torch.testing.assert_close(probs, torch.sigmoid(logits[0]))


def test_merlin_bare_encoder_and_lightning_checkpoints(tmp_path):
    _, saved = _tiny_merlin_clip_file(tmp_path, seed=4)
    bare = tmp_path / "encoder.pt"  # as Merlin's five-year model: i3_resnet keys without prefix
    torch.save(saved, bare)
    _assert_bit_exact(open_classifier(bare, "merlin-i3resnet152").module, saved)

    lightning = tmp_path / "lightning.ckpt"
    wrapped = {f"encode_image.i3_resnet.{k}": v for k, v in saved.items()}
    torch.save({"state_dict": wrapped, "hyper_parameters": {"data": pathlib.PurePosixPath("x")}}, lightning)
    with pytest.raises(CTCFError, match="--trust-checkpoint"):
        open_classifier(lightning, "merlin-i3resnet152")
    _assert_bit_exact(open_classifier(lightning, "merlin-i3resnet152", allow_pickle=True).module, saved)


def test_merlin_target_names_from_merlins_phenotypes_csv_or_json(tmp_path):
    path, _ = _tiny_merlin_clip_file(tmp_path)
    names = [f"Test phenotype {i}, with a comma" for i in range(6)]
    with open(tmp_path / "phenotypes.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["phecode", "phecode_str"])
        writer.writerows([[f"{i}.5", name] for i, name in enumerate(names)])
    clf = open_classifier(path, "merlin-i3resnet152")  # found beside the weights
    assert clf.targets == names
    assert clf.target_index("test phenotype 3, with a comma") == 3

    from CTCounterfactualLib.models.merlin import load_merlin

    listed = tmp_path / "codes.json"
    listed.write_text(
        json.dumps({"source": "test", "phecodes": [{"phecode": i, "name": f"n{i}"} for i in range(6)]}),
        encoding="utf-8",
    )
    assert load_merlin(path, phecodes=listed).targets == [f"n{i}" for i in range(6)]
    listed.write_text(json.dumps([{"phecode": "1", "name": "only one"}]), encoding="utf-8")
    with pytest.raises(CTCFError, match="lists 1 phecodes but merlin_tiny.pt has 6 outputs"):
        load_merlin(path, phecodes=listed)


def test_merlin_input_is_merlins_ras_array():
    """The convention gives what MONAI's Orientationd('RAS') + ScaleIntensityRanged(-1000, 1000, clip) give."""
    g = torch.Generator().manual_seed(0)
    hu = torch.rand(3, 224, 224, generator=g) * 2400 - 1200  # LPS (identity direction), some HU outside the window
    got = MERLIN_CONVENTION.to_model(hu)
    ras = sitk.DICOMOrient(sitk.GetImageFromArray(hu.numpy()), "RAS")
    assert ras.GetDirection() == (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
    xyz = sitk.GetArrayFromImage(ras).transpose(2, 1, 0)  # MONAI's (x, y, z) axes
    expected = np.clip((xyz + 1000.0) / 2000.0, 0.0, 1.0)
    assert tuple(got.shape) == (1, 1, 224, 224, 3)
    np.testing.assert_allclose(got[0, 0].numpy(), expected, rtol=0, atol=1e-6)


def test_merlin_gradient_reaches_the_volume_and_checkpointing_is_exact(tmp_path):
    path, _ = _tiny_merlin_clip_file(tmp_path, seed=6)
    clf = open_classifier(path, "merlin-i3resnet152").to("cpu", torch.float64)
    hu = (torch.rand(4, 24, 24, dtype=torch.float64) * 1800 - 900).requires_grad_()
    _assert_gradient_reaches_volume_and_checkpointing_is_exact(clf, hu, 2)


def test_merlin_mismatch_and_wrong_file_are_one_line_errors(tmp_path):
    path, saved = _tiny_merlin_clip_file(tmp_path)
    clip = torch.load(path)
    clip["encode_image.i3_resnet.layer2.0.conv2.weight"] = torch.zeros(8, 8, 1, 3, 3)
    torch.save(clip, path)
    with pytest.raises(CTCFError, match=r"key 'layer2\.0\.conv2\.weight' has shape \(8, 8, 1, 3, 3\)"):
        open_classifier(path, "merlin-i3resnet152")
    torch.save({"encode_text.linear_layer.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CTCFError, match="holds no Merlin image encoder"):
        open_classifier(path, "merlin-i3resnet152")


# --- registry and plug-ins -----------------------------------------------------------------------


def test_published_formats_are_registered_and_imported_lazily():
    assert {"torchscript", "lungmask-r231", "merlin-i3resnet152"} <= set(classifier_formats())
    code = (
        "import sys, CTCounterfactualLib.models.formats as m; "
        "print(any(n in sys.modules for n in ('CTCounterfactualLib.models.lungmask', "
        "'CTCounterfactualLib.models.merlin')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_entry_point_plugin_is_found_by_open_classifier(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "ctcf_probe_plugin.py").write_text(
        textwrap.dedent(
            """
            from CTCounterfactualLib.models.classifier import Classifier

            def load(path):
                targets = path.read_text().split()
                return Classifier(module=lambda x: x.mean().repeat(len(targets)), targets=targets, name="probe")
            """
        ),
        encoding="utf-8",
    )
    dist = site / "ctcf_probe_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ctcf-probe-plugin\nVersion: 0.1\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text(
        "[ctcf.classifiers]\nprobe-format = ctcf_probe_plugin:load\n", encoding="utf-8"
    )
    model = tmp_path / "probe.txt"
    model.write_text("alpha beta", encoding="utf-8")

    with pytest.raises(CTCFError, match="unknown classifier format 'probe-format'"):
        open_classifier(model, "probe-format")
    monkeypatch.syspath_prepend(str(site))
    assert "probe-format" in classifier_formats()
    clf = open_classifier(model, "probe-format")
    assert clf.name == "probe" and clf.targets == ["alpha", "beta"]
    assert float(clf.outputs(torch.zeros(2, 4, 4))[1]) == pytest.approx(float(torch.sigmoid(torch.tensor(0.5))))
