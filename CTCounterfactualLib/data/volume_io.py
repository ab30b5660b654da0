"""Reading, writing and checking CT volumes (NRRD, NIfTI, MetaImage, DICOM series).

Pure SimpleITK + numpy: no Slicer or Qt imports, so it runs in plain Python and in tests.
Arrays are in SimpleITK/numpy order (slices, rows, cols); geometry is in SimpleITK order
(x, y, z).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from CTCounterfactualLib.data.file_checks import check_complete
from CTCounterfactualLib.data.native_stderr import captured
from CTCounterfactualLib.errors import CTCFError, one_line
from CTCounterfactualLib.paths import refuse_special_entries, require_regular_file

__all__ = [
    "Geometry",
    "Volume",
    "image_from_array",
    "read_volume",
    "validate_volume",
    "write_volume",
]

# Extensions write_volume accepts (single-file formats only, so the write can be atomic).
_WRITE_EXTENSIONS = (".nii.gz", ".nrrd", ".nii", ".mha")
_READ_HINT = "give a .nrrd, .nii.gz, .nii or .mha file, or a folder holding one DICOM series"


@dataclass(frozen=True)
class Geometry:
    """Voxel grid of a volume, in SimpleITK order (x, y, z) = (cols, rows, slices)."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]  # 9 values, row-major 3x3

    def to_dict(self) -> dict:
        """Return a JSON-able dict of the geometry."""
        return {
            "size": [int(v) for v in self.size],
            "spacing": [float(v) for v in self.spacing],
            "origin": [float(v) for v in self.origin],
            "direction": [float(v) for v in self.direction],
        }


@dataclass
class Volume:
    """A CT volume: float32 HU array of shape (slices, rows, cols) plus its geometry."""

    array: np.ndarray
    geometry: Geometry
    source: str  # path it was read from ('' if made in memory)
    pixel_type: str = ""  # the file's voxel type as numpy names it (e.g. 'int16', 'uint8'); '' if made in memory


def _geometry_of(image: sitk.Image) -> Geometry:
    """Geometry of a 3D SimpleITK image."""
    size = image.GetSize()
    spacing = image.GetSpacing()
    origin = image.GetOrigin()
    return Geometry(
        size=(int(size[0]), int(size[1]), int(size[2])),
        spacing=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
        origin=(float(origin[0]), float(origin[1]), float(origin[2])),
        direction=tuple(float(v) for v in image.GetDirection()),
    )


def _reason(exc: BaseException) -> str:
    """Last non-empty line of an exception message (where SimpleITK puts the reason)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return lines[-1].removeprefix("sitk::ERROR: ")


def _quiet_series_ids(folder: Path) -> tuple[str, ...]:
    """The GDCM series IDs in ``folder``, without ITK's warning on stderr when there are none (we say it once)."""
    shown = sitk.ProcessObject_GetGlobalWarningDisplay()
    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    try:
        return sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    finally:
        sitk.ProcessObject_SetGlobalWarningDisplay(shown)


def _read_dicom_series(folder: Path) -> sitk.Image:
    """Read the DICOM series with the most files in ``folder``."""
    refuse_special_entries(folder, "DICOM folder")
    try:
        series_ids = _quiet_series_ids(folder)
    except RuntimeError as exc:
        raise CTCFError(f"cannot scan folder {folder} for DICOM files ({_reason(exc)}); {_READ_HINT}") from None
    best: tuple[str, ...] = ()
    for series_id in series_ids:
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_id)
        if len(files) > len(best):
            best = tuple(files)
    if not best:
        raise CTCFError(f"no DICOM series found in folder {folder}; {_READ_HINT}")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(best))
    with captured() as native:
        try:
            image = reader.Execute()
        except RuntimeError as exc:
            image, error = None, exc
    if image is None:
        reason = one_line(native.text) or _reason(error)
        raise CTCFError(
            f"cannot read the DICOM series in {folder} ({reason}); check that the folder holds one complete CT series"
        ) from None
    native.replay()
    return image


def read_volume(path: str | os.PathLike) -> Volume:
    """Read a CT volume from a NRRD/NIfTI/MetaImage file or a DICOM series folder.

    The voxels are converted to float32; the input is only read, never modified.
    Raises CTCFError if the path is missing, unreadable, or not a single-channel 3D image.
    """
    p = Path(path)
    if not p.exists():
        raise CTCFError(f"input not found: {p}; check the path ({_READ_HINT})")
    if p.is_dir():
        image = _read_dicom_series(p)
    else:
        require_regular_file(p, "input")
        check_complete(p)
        with captured() as native:
            try:
                image = sitk.ReadImage(str(p))
            except RuntimeError as exc:
                image, error = None, exc
        if image is None:
            reason = one_line(native.text) or _reason(error)  # the reader's own words beat ITK's errno
            raise CTCFError(f"cannot read {p} as an image ({reason}); {_READ_HINT}") from None
        native.replay()

    dim = image.GetDimension()
    if dim == 2:
        raise CTCFError(
            f"{p} is a 2D image {image.GetSize()}: a 3D CT volume is needed "
            "(for DICOM, give the folder of the whole series, not one slice)"
        )
    if dim != 3:
        raise CTCFError(
            f"{p} is a {dim}D image {image.GetSize()}: a 3D CT volume is needed; extract a single 3D volume first"
        )
    components = image.GetNumberOfComponentsPerPixel()
    if components != 1:
        raise CTCFError(
            f"{p} has {components} components per voxel (vector/RGB): a single-channel CT volume in HU is needed"
        )
    raw = sitk.GetArrayViewFromImage(image)
    return Volume(
        array=raw.astype(np.float32), geometry=_geometry_of(image), source=os.fspath(path), pixel_type=str(raw.dtype)
    )


def image_from_array(array: np.ndarray, geometry: Geometry) -> sitk.Image:
    """Make a SimpleITK image from an (slices, rows, cols) array with the given geometry.

    The array dtype is kept. Raises CTCFError if the array is not 3D or its shape
    does not match ``geometry.size`` reversed.
    """
    array = np.asarray(array)
    if array.ndim != 3:
        raise CTCFError(f"expected a 3D array (slices, rows, cols), got shape {array.shape}; pass a single 3D volume")
    expected = tuple(int(v) for v in geometry.size)[::-1]
    if tuple(array.shape) != expected:
        raise CTCFError(
            f"array shape {array.shape} does not match geometry size {tuple(geometry.size)} "
            f"(expected array shape {expected}); use the geometry of the volume the array came from"
        )
    if len(geometry.direction) != 9:
        raise CTCFError(f"geometry direction has {len(geometry.direction)} values, expected 9 (a 3x3 matrix)")
    try:
        image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=False)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise CTCFError(
            f"cannot make an image from a {array.dtype} array ({_reason(exc)}); use a float32 or integer array"
        ) from None
    image.SetSpacing([float(v) for v in geometry.spacing])
    image.SetOrigin([float(v) for v in geometry.origin])
    image.SetDirection([float(v) for v in geometry.direction])
    return image


def _write_extension(path: Path) -> str:
    """The writable extension of ``path`` or CTCFError."""
    name = path.name.lower()
    for ext in _WRITE_EXTENSIONS:
        if name.endswith(ext) and len(name) > len(ext):
            return ext
    raise CTCFError(f"cannot write {path}: unsupported file type; use one of " + ", ".join(_WRITE_EXTENSIONS))


def write_volume(
    array: np.ndarray,
    geometry: Geometry,
    path: str | os.PathLike,
    *,
    compress: bool = True,
) -> None:
    """Write ``array`` with exactly ``geometry`` to ``path`` (format from the extension).

    The write is atomic: a temp file in the same directory is written and then renamed
    onto ``path``, so a failed write leaves no partial file and an existing target intact.
    """
    target = Path(path)
    _write_extension(target)
    image = image_from_array(array, geometry)
    if not target.parent.is_dir():
        raise CTCFError(f"cannot write {target}: folder {target.parent} does not exist; create it first")
    # Keep the real extension in the temp name: SimpleITK picks the writer from it.
    tmp = target.with_name(f".tmp-{secrets.token_hex(6)}-{target.name}")
    try:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
        os.replace(tmp, target)
    except RuntimeError as exc:
        raise CTCFError(
            f"cannot write {target} ({_reason(exc)}); check the folder is writable and has free space"
        ) from None
    except OSError as exc:
        raise CTCFError(
            f"cannot write {target} ({exc.strerror or exc}); check the folder is writable and has free space"
        ) from None
    finally:
        if tmp.exists():
            try:
                tmp.unlink()
            except OSError:
                pass


def validate_volume(volume: Volume, *, min_slices: int = 1) -> None:
    """Check that ``volume`` looks like a usable CT; raise CTCFError if not."""
    array = volume.array
    where = f" ({volume.source})" if volume.source else ""
    if array.size == 0:
        raise CTCFError(f"the volume{where} is empty (shape {array.shape}): not a CT")
    if array.ndim != 3:
        raise CTCFError(f"the volume{where} has shape {array.shape}: expected 3D (slices, rows, cols)")
    slices = array.shape[0]
    if slices < min_slices:
        raise CTCFError(
            f"the volume{where} has {slices} slices but at least {min_slices} are needed; "
            f"use a smaller chunk size (at most {slices}) or a volume with more slices"
        )
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(array.size - np.count_nonzero(finite))
        raise CTCFError(f"the volume{where} has {bad} NaN or inf voxels; fix or re-export the input")
    lo = float(array.min())
    hi = float(array.max())
    if hi == lo:
        raise CTCFError(f"the volume{where} is constant (all voxels = {lo:g} HU): not a CT")
