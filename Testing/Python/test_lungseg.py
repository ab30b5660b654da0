"""Lung segmentation net and the lung-size target built on it."""

from pathlib import Path

import numpy as np
import torch

from CTCounterfactualLib.data.phantom import LABELS, PhantomSpec, make_phantom
from CTCounterfactualLib.models.classifier import load_classifier
from CTCounterfactualLib.training.lungseg import (
    LungSize,
    lung_classes,
    lung_dataset,
    lung_dice,
    save_lungsize,
    train_lungseg,
)

DATA = Path(__file__).resolve().parents[1] / "Data"


def test_lung_classes_split_sides_and_include_vessels():
    p = make_phantom(PhantomSpec(seed=5, nodules=2))
    c = lung_classes(p.labels)
    lung = np.isin(p.labels, [LABELS["right_lung"], LABELS["left_lung"], LABELS["vessels"], LABELS["nodule"]])
    assert np.array_equal(c > 0, lung)
    assert (c[p.labels == LABELS["right_lung"]] == 1).all() and (c[p.labels == LABELS["left_lung"]] == 2).all()
    assert (c[p.labels == LABELS["effusion"]] == 0).all()


def test_short_training_segments_lungs_and_lung_size_round_trips(tmp_path):
    x, y = lung_dataset([1, 2])
    net = train_lungseg(x, y, steps=60, batch=16)
    dice = lung_dice(net, x, y > 0)
    assert dice > 0.8
    path = save_lungsize(net, tmp_path / "lungsize.pt", {"steps": 60})
    clf = load_classifier(path)
    assert clf.targets == ["lung size"] and not clf.apply_sigmoid
    hu = torch.as_tensor(make_phantom(PhantomSpec(seed=1)).hu)
    with torch.no_grad():
        size = float(clf.score(hu, 0))
    with torch.no_grad():
        direct = LungSize(net)(clf.convention.to_model(hu))
    assert abs(size - float(direct)) < 1e-6
    lung_share = float((y[:48] > 0).float().mean())  # phantom seed 1 is the first 48 training slices
    assert abs(size - lung_share) < 0.05


def test_example_seg_lies_on_its_anatomy():
    """The label map, placed on the CT by physical position, labels lung where the CT has air-filled
    lung and liver where it has liver (the published file's origin was 82 slices off)."""
    import SimpleITK as sitk

    ct = sitk.ReadImage(str(DATA / "example_ct.nii.gz"))
    seg = sitk.Resample(
        sitk.ReadImage(str(DATA / "example_seg.nii.gz")), ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0
    )
    hu, labels = sitk.GetArrayFromImage(ct), sitk.GetArrayFromImage(seg)
    lung, liver = np.isin(labels, (10, 11, 12, 13, 14)), labels == 5
    assert lung.sum() > 1000 and liver.sum() > 1000
    assert hu[lung].mean() < -600
    assert 20 < hu[liver].mean() < 80 and hu[liver].std() < 40


def test_real_ct_dice_uses_the_label_map_on_the_ct_grid():
    """The label map covers 30 of the CT's 112 slices: a net that calls every pixel lung must get
    Dice = 2|L| / (|covered pixels| + |L|), small but not zero."""

    class AllLung(torch.nn.Module):
        def forward(self, x):
            out = torch.zeros(x.shape[0], 3, *x.shape[-2:])
            out[:, 1] = 1.0
            return out

    from CTCounterfactualLib.training.lungseg import real_ct_dice

    dice = real_ct_dice(AllLung(), DATA / "example_ct.nii.gz", DATA / "example_seg.nii.gz")
    assert 0.0 < dice < 0.2  # lungs are a small part of the 30 labelled slices
