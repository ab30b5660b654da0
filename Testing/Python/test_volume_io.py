"""Tests for CTCounterfactualLib.data.volume_io on real CT files (no mocks)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from CTCounterfactualLib.data.volume_io import (
    Geometry,
    Volume,
    image_from_array,
    read_volume,
    validate_volume,
    write_volume,
)
from CTCounterfactualLib.errors import CTCFError

DATA = Path(__file__).resolve().parents[1] / "Data"
EXAMPLE_CT = DATA / "example_ct.nii.gz"
EXAMPLE_DICOM = DATA / "example_ct_dicom"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tmp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".tmp-"))


def _assert_same_geometry(a: Geometry, b: Geometry) -> None:
    assert a.size == b.size
    np.testing.assert_allclose(a.spacing, b.spacing, atol=1e-6)
    np.testing.assert_allclose(a.origin, b.origin, atol=1e-6)
    np.testing.assert_allclose(a.direction, b.direction, atol=1e-6)


def _small_geometry(shape: tuple[int, int, int]) -> Geometry:
    return Geometry(
        size=(shape[2], shape[1], shape[0]),
        spacing=(1.0, 1.0, 2.5),
        origin=(0.0, 0.0, 0.0),
        direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
    )


def test_read_example_ct() -> None:
    before = _sha256(EXAMPLE_CT)
    vol = read_volume(EXAMPLE_CT)
    assert vol.array.dtype == np.float32
    assert vol.array.shape == (112, 101, 122)
    assert vol.geometry.size == (122, 101, 112)
    np.testing.assert_allclose(vol.geometry.spacing, (3.0, 3.0, 3.0), atol=1e-6)
    np.testing.assert_allclose(vol.geometry.direction, (-1, 0, 0, 0, -1, 0, 0, 0, 1), atol=1e-6)
    assert vol.source == str(EXAMPLE_CT)
    assert vol.array.min() < -900 and vol.array.max() > 1000
    validate_volume(vol, min_slices=112)
    # JSON-able geometry that round-trips its values.
    d = json.loads(json.dumps(vol.geometry.to_dict()))
    assert d["size"] == [122, 101, 112]
    assert len(d["direction"]) == 9
    assert _sha256(EXAMPLE_CT) == before


@pytest.mark.parametrize("name", ["out.nrrd", "out.nii.gz", "out.mha", "out.nii"])
def test_round_trip(tmp_path: Path, name: str) -> None:
    before = _sha256(EXAMPLE_CT)
    vol = read_volume(EXAMPLE_CT)
    target = tmp_path / name
    write_volume(vol.array, vol.geometry, target)
    assert target.is_file()
    assert _tmp_files(tmp_path) == []
    back = read_volume(target)
    assert back.array.dtype == np.float32
    np.testing.assert_array_equal(back.array, vol.array)
    _assert_same_geometry(back.geometry, vol.geometry)
    # The input was never touched.
    assert _sha256(EXAMPLE_CT) == before
    # Reading the output does not change it either.
    written = _sha256(target)
    read_volume(target)
    assert _sha256(target) == written


def test_write_keeps_dtype(tmp_path: Path) -> None:
    vol = read_volume(EXAMPLE_CT)
    target = tmp_path / "int16.nrrd"
    write_volume(vol.array.astype(np.int16), vol.geometry, target, compress=False)
    img = sitk.ReadImage(str(target))
    assert img.GetPixelID() == sitk.sitkInt16
    target32 = tmp_path / "float.nii.gz"
    write_volume(vol.array, vol.geometry, target32)
    assert sitk.ReadImage(str(target32)).GetPixelID() == sitk.sitkFloat32


def test_image_from_array_geometry() -> None:
    vol = read_volume(EXAMPLE_CT)
    img = image_from_array(vol.array, vol.geometry)
    assert img.GetSize() == vol.geometry.size
    np.testing.assert_allclose(img.GetOrigin(), vol.geometry.origin, atol=1e-6)
    np.testing.assert_allclose(img.GetDirection(), vol.geometry.direction, atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), vol.array)


def test_read_dicom_folder() -> None:
    before = {p.name: _sha256(p) for p in EXAMPLE_DICOM.iterdir()}
    vol = read_volume(EXAMPLE_DICOM)
    assert vol.array.dtype == np.float32
    assert vol.array.shape == (20, 512, 512)
    assert vol.geometry.size == (512, 512, 20)
    assert vol.geometry.spacing[2] == pytest.approx(2.0, abs=1e-3)
    assert vol.geometry.spacing[0] == pytest.approx(0.977, abs=1e-3)
    assert vol.array.min() < -500
    assert vol.array.max() > 200
    validate_volume(vol, min_slices=20)
    assert {p.name: _sha256(p) for p in EXAMPLE_DICOM.iterdir()} == before


def _write_small_dicom_series(folder: Path, n: int) -> None:
    """Write an n-slice 16x16 CT series with its own SeriesInstanceUID into folder."""
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    root = "1.2.826.0.1.3680043.2.1125.99"
    for i in range(n):
        img = sitk.GetImageFromArray(np.full((16, 16), i * 10 - 500, dtype=np.int16))
        tags = {
            "0008|0060": "CT",
            "0020|000d": f"{root}.1",
            "0020|000e": f"{root}.2",
            "0008|0018": f"{root}.3.{i}",
            "0020|0013": str(i + 1),
            "0020|0032": f"0\\0\\{i * 5}",
            "0020|0037": "1\\0\\0\\0\\1\\0",
        }
        for key, value in tags.items():
            img.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"small{i:03d}.dcm"))
        writer.Execute(img)


@pytest.mark.parametrize(("n_small", "expected"), [(3, (20, 512, 512)), (25, (25, 16, 16))])
def test_read_dicom_folder_takes_largest_series(tmp_path: Path, n_small: int, expected: tuple[int, int, int]) -> None:
    folder = tmp_path / "dicom"
    shutil.copytree(EXAMPLE_DICOM, folder)
    _write_small_dicom_series(folder, n_small)
    (folder / "notes.txt").write_text("not dicom\n", encoding="utf-8")
    assert len(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))) == 2
    vol = read_volume(folder)
    assert vol.array.shape == expected


def test_write_size_mismatch_leaves_nothing(tmp_path: Path) -> None:
    vol = read_volume(EXAMPLE_CT)
    target = tmp_path / "bad.nrrd"
    wrong = Geometry(
        size=(vol.geometry.size[0], vol.geometry.size[1], vol.geometry.size[2] + 1),
        spacing=vol.geometry.spacing,
        origin=vol.geometry.origin,
        direction=vol.geometry.direction,
    )
    with pytest.raises(CTCFError, match="does not match"):
        write_volume(vol.array, wrong, target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_write_unknown_extension_leaves_nothing(tmp_path: Path) -> None:
    vol = read_volume(EXAMPLE_CT)
    target = tmp_path / "out.xyz"
    with pytest.raises(CTCFError, match="unsupported"):
        write_volume(vol.array, vol.geometry, target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_existing_target(tmp_path: Path) -> None:
    vol = read_volume(EXAMPLE_CT)
    target = tmp_path / "keep.nrrd"
    write_volume(vol.array, vol.geometry, target)
    before = _sha256(target)
    wrong = Geometry(
        size=(1, 2, 3),
        spacing=vol.geometry.spacing,
        origin=vol.geometry.origin,
        direction=vol.geometry.direction,
    )
    with pytest.raises(CTCFError, match="does not match"):
        write_volume(vol.array, wrong, target)
    assert _sha256(target) == before
    assert _tmp_files(tmp_path) == []


def test_failed_rename_cleans_temp_and_keeps_target(tmp_path: Path) -> None:
    # The temp file is written, then os.replace fails because the target is a folder.
    vol = read_volume(EXAMPLE_CT)
    target = tmp_path / "taken.nrrd"
    target.mkdir()
    (target / "inside.txt").write_text("keep me\n", encoding="utf-8")
    with pytest.raises(CTCFError, match="cannot write"):
        write_volume(vol.array, vol.geometry, target)
    assert target.is_dir()
    assert (target / "inside.txt").read_text(encoding="utf-8") == "keep me\n"
    assert _tmp_files(tmp_path) == []


def test_write_overwrites_atomically(tmp_path: Path) -> None:
    vol = read_volume(EXAMPLE_CT)
    target = tmp_path / "out.nrrd"
    write_volume(vol.array, vol.geometry, target)
    write_volume(vol.array + 1.0, vol.geometry, target)
    assert _tmp_files(tmp_path) == []
    np.testing.assert_array_equal(read_volume(target).array, vol.array + 1.0)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(CTCFError, match="not found"):
        read_volume(tmp_path / "nope.nrrd")


def test_text_file_named_nrrd(tmp_path: Path) -> None:
    bad = tmp_path / "x.nrrd"
    bad.write_text("this is not an image\n", encoding="utf-8")
    before = _sha256(bad)
    with pytest.raises(CTCFError, match="cannot read"):
        read_volume(bad)
    assert _sha256(bad) == before


def test_2d_image(tmp_path: Path) -> None:
    path = tmp_path / "flat.nrrd"
    sitk.WriteImage(sitk.Image([8, 8], sitk.sitkFloat32), str(path))
    with pytest.raises(CTCFError, match="2D"):
        read_volume(path)


def test_4d_image(tmp_path: Path) -> None:
    path = tmp_path / "time.nrrd"
    sitk.WriteImage(sitk.Image([4, 4, 4, 2], sitk.sitkFloat32), str(path))
    assert sitk.ReadImage(str(path)).GetDimension() == 4
    with pytest.raises(CTCFError, match="4D"):
        read_volume(path)


def test_vector_image(tmp_path: Path) -> None:
    path = tmp_path / "rgb.nrrd"
    sitk.WriteImage(sitk.Image([4, 4, 4], sitk.sitkVectorFloat32, 3), str(path))
    with pytest.raises(CTCFError, match="components"):
        read_volume(path)


def test_single_slice_reads_but_fails_validation(tmp_path: Path) -> None:
    path = tmp_path / "one.nrrd"
    arr = np.random.default_rng(0).normal(0, 100, (1, 8, 8)).astype(np.float32)
    write_volume(arr, _small_geometry(arr.shape), path)
    vol = read_volume(path)
    assert vol.array.shape == (1, 8, 8)
    with pytest.raises(CTCFError, match="chunk size"):
        validate_volume(vol, min_slices=4)


def test_empty_dicom_folder(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(CTCFError, match="DICOM"):
        read_volume(folder)


def test_validate_nan() -> None:
    arr = np.random.default_rng(1).normal(0, 100, (4, 8, 8)).astype(np.float32)
    arr[0, 0, :3] = np.nan
    arr[1, 1, 1] = np.inf
    with pytest.raises(CTCFError, match="4 NaN"):
        validate_volume(Volume(arr, _small_geometry(arr.shape), ""))


def test_validate_constant() -> None:
    arr = np.full((4, 8, 8), -1000.0, dtype=np.float32)
    with pytest.raises(CTCFError, match=r"constant \(all voxels = -1000 HU\)"):
        validate_volume(Volume(arr, _small_geometry(arr.shape), ""))


def test_validate_too_few_slices() -> None:
    arr = np.random.default_rng(2).normal(0, 100, (3, 8, 8)).astype(np.float32)
    with pytest.raises(CTCFError, match="3 slices but at least 16") as info:
        validate_volume(Volume(arr, _small_geometry(arr.shape), ""), min_slices=16)
    assert "chunk size" in str(info.value)


def test_validate_empty() -> None:
    arr = np.zeros((0, 8, 8), dtype=np.float32)
    with pytest.raises(CTCFError, match="empty"):
        validate_volume(Volume(arr, _small_geometry(arr.shape), ""))


def test_validate_ok() -> None:
    arr = np.random.default_rng(3).normal(0, 100, (4, 8, 8)).astype(np.float32)
    validate_volume(Volume(arr, _small_geometry(arr.shape), ""), min_slices=4)
