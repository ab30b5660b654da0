"""Input conventions: orientation, resizing and value maps are applied and undone exactly."""

import pytest
import torch

from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.models.autoencoder import PUBLISHED_CT_CONVENTION
from CTCounterfactualLib.models.conventions import HUWindow, SliceConvention, VolumeConvention


def test_published_convention_reproduces_reference_wrapper():
    x = torch.rand(2, 256, 256)
    got = PUBLISHED_CT_CONVENTION.to_model(x)
    expected = torch.flip(torch.rot90(x, 1, dims=(-2, -1)), dims=(-1,))[:, None] * 2 - 1
    assert torch.allclose(got, expected)
    out = torch.rand(2, 1, 256, 256) * 4 - 2
    back = PUBLISHED_CT_CONVENTION.from_model(out, (256, 256))
    undone = torch.rot90(torch.flip((out[:, 0] + 2) / 4, dims=(-1,)), -1, dims=(-2, -1))
    assert torch.allclose(back, undone)


@pytest.mark.parametrize("k,flip", [(0, False), (1, True), (2, False), (3, True)])
def test_orientation_round_trip_on_non_square_slices(k, flip):
    conv = SliceConvention(rot90_k=k, flip=flip, input_scale=1, input_offset=0, output_scale=1, output_offset=0)
    x = torch.rand(3, 20, 28)
    m = conv.to_model(x)
    assert m.shape == ((3, 1, 20, 28) if k % 2 == 0 else (3, 1, 28, 20))
    assert torch.equal(conv.from_model(m, (20, 28)), x)


def test_resize_goes_to_model_size_and_back():
    conv = SliceConvention(size=16, input_scale=1, input_offset=0, output_scale=1, output_offset=0)
    x = torch.ones(2, 40, 48) * 0.25
    m = conv.to_model(x)
    assert m.shape == (2, 1, 16, 16)
    back = conv.from_model(m, (40, 48))
    assert back.shape == (2, 40, 48) and torch.allclose(back, x)


def test_volume_convention_layouts_and_window():
    hu = torch.linspace(-1000, 1000, 4 * 6 * 8).reshape(4, 6, 8)
    a = VolumeConvention(layout="NCDHW").to_model(hu)
    b = VolumeConvention(layout="NCHWD").to_model(hu)
    assert a.shape == (1, 1, 4, 6, 8) and b.shape == (1, 1, 6, 8, 4)
    assert torch.equal(a[0, 0].permute(1, 2, 0), b[0, 0])
    assert float(a.min()) == 0.0 and float(a.max()) == 1.0
    clipped = VolumeConvention(window=HUWindow(-500, 500), clip=True).to_model(hu)
    assert float(clipped.min()) == 0.0 and float(clipped.max()) == 1.0
    free = VolumeConvention(window=HUWindow(-500, 500)).to_model(hu)
    assert float(free.max()) == pytest.approx(1.5)


def test_dict_round_trip_and_unknown_fields():
    conv = SliceConvention(window=HUWindow(-1024, 600), size=64, rot90_k=1, flip=True)
    assert SliceConvention.from_dict(conv.to_dict()) == conv
    vconv = VolumeConvention(size=224, layout="NCHWD", rot90_k=1, flip=True)
    assert VolumeConvention.from_dict(vconv.to_dict()) == vconv
    with pytest.raises(CTCFError, match="unknown"):
        SliceConvention.from_dict({"windw": [0, 1]})
    with pytest.raises(CTCFError, match="layout"):
        VolumeConvention(layout="NHWC")
