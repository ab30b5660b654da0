"""Make the bundled demo chest CT: LIDC-IDRI-0001 resampled to 256 x 256 x 56 (1.41 x 1.41 x 5 mm) + its labels.

Run from the repository root with the shared data folder beside it (CI has it, clones do not):
``python docs/make_demo_ct.py [../shared/data]``. Writes ``CTCounterfactualLib/resources/demo/``
``chest_ct.nii.gz`` (int16 HU) and ``chest_labels.nii.gz`` (TotalSegmentator v2 labels, uint8).
"""

from __future__ import annotations

import sys
from pathlib import Path

import SimpleITK as sitk

from CTCounterfactualLib.data.demo_ct import DEMO_CT, DEMO_LABELS

SIZE_XY = 256  # 360 mm field of view at 1.41 mm: the VQ-GAN works at 128 x 128 (2.8 mm)
SPACING_Z = 5.0
Z_RANGE_MM = (-297.5, -17.5)  # lung bases (with the liver dome) to the apices: 56 slices


def _grid(ct: sitk.Image) -> sitk.Image:
    """Identity-direction (LPS) reference grid covering the scan's field of view."""
    fov = ct.GetSpacing()[0] * ct.GetSize()[0]
    spacing = fov / SIZE_XY
    corner = ct.TransformIndexToPhysicalPoint((0, ct.GetSize()[1] - 1, 0))  # most anterior row (y flipped)
    n_z = int(round((Z_RANGE_MM[1] - Z_RANGE_MM[0]) / SPACING_Z))
    ref = sitk.Image(SIZE_XY, SIZE_XY, n_z, sitk.sitkInt16)
    ref.SetSpacing((spacing, spacing, SPACING_Z))
    ref.SetOrigin(
        (corner[0] + (spacing - ct.GetSpacing()[0]) / 2, corner[1] + (spacing - ct.GetSpacing()[1]) / 2, Z_RANGE_MM[0])
    )
    return ref


def main(data: Path) -> None:
    src = data / "lidc_idri_0001"
    ct = sitk.ReadImage(str(src / "ct.nii.gz"), sitk.sitkFloat32)
    ct = sitk.Maximum(ct, -1024.0)  # -2048 marks outside the scan's field of view: air
    labels = sitk.ReadImage(str(src / "totalseg_labels.nii.gz"))
    ref = _grid(ct)
    # anti-aliasing before the 2x in-plane / 2x through-plane downsampling
    smooth = sitk.SmoothingRecursiveGaussian(ct, [0.6, 0.6, 1.5])
    out_ct = sitk.Resample(smooth, ref, sitk.Transform(), sitk.sitkLinear, -1024.0, sitk.sitkFloat32)
    out_ct = sitk.Cast(sitk.Round(out_ct), sitk.sitkInt16)
    out_lab = sitk.Resample(labels, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    DEMO_CT.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(out_ct, str(DEMO_CT), useCompression=True)
    sitk.WriteImage(out_lab, str(DEMO_LABELS), useCompression=True)
    print(out_ct.GetSize(), out_ct.GetSpacing(), out_ct.GetOrigin())


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared/data"))
