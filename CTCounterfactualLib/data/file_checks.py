"""Damage checks SimpleITK does not make: a NIfTI file (.nii, .nii.gz) shorter than its header says.

SimpleITK reads a cut NIfTI without complaint and fills the missing voxels with zeros; NRRD and MetaImage
readers already fail on a short read. The check reads the header (NIfTI-1 or NIfTI-2, either byte order),
computes ``vox_offset + voxels * bitpix / 8`` and compares it with the bytes the file (decompressed) holds.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

from CTCounterfactualLib.errors import CTCFError

_NIFTI1_SIZE, _NIFTI2_SIZE = 348, 540
_BLOCK = 1 << 20


def _is_nifti(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def _expected_bytes(header: bytes) -> int | None:
    """Bytes a single-file NIfTI must hold according to its header; None if the header is not NIfTI-1/2."""
    for order in "<>":
        if len(header) >= 4 and struct.unpack(order + "i", header[:4])[0] == _NIFTI1_SIZE and len(header) >= 348:
            if header[344:347] != b"n+1":
                return None  # a .hdr/.img pair: the voxels are elsewhere
            dims = struct.unpack(order + "8h", header[40:56])
            bitpix = struct.unpack(order + "h", header[72:74])[0]
            offset = max(int(struct.unpack(order + "f", header[108:112])[0]), _NIFTI1_SIZE)
            break
        if len(header) >= 4 and struct.unpack(order + "i", header[:4])[0] == _NIFTI2_SIZE and len(header) >= 540:
            if header[4:7] != b"n+2":
                return None
            bitpix = struct.unpack(order + "h", header[14:16])[0]
            dims = struct.unpack(order + "8q", header[16:80])
            offset = max(struct.unpack(order + "q", header[168:176])[0], _NIFTI2_SIZE)
            break
    else:
        return None
    ndim = dims[0]
    if not 1 <= ndim <= 7 or bitpix <= 0:
        return None  # SimpleITK reports a malformed header itself
    voxels = 1
    for d in dims[1 : ndim + 1]:
        voxels *= max(int(d), 0)
    return offset + voxels * bitpix // 8


def _read_all(path: Path) -> tuple[bytes, int, bool]:
    """(first 540 bytes, total bytes, compressed) of the file, decompressed if gzip; CTCFError if damaged."""
    with open(path, "rb") as f:
        compressed = f.read(2) == b"\x1f\x8b"  # gzip magic, whatever the name says
    opener = gzip.open if compressed else open
    head = b""
    total = 0
    try:
        with opener(path, "rb") as f:
            while block := f.read(_BLOCK):
                if len(head) < _NIFTI2_SIZE:
                    head += block[: _NIFTI2_SIZE - len(head)]
                total += len(block)
    except EOFError:
        raise CTCFError(
            f"{path} is truncated: its compressed data ends early (an interrupted copy or download?); "
            "copy or export the file again"
        ) from None
    except (OSError, zlib.error) as e:
        raise CTCFError(f"{path} is damaged: cannot decompress it ({e}); copy or export the file again") from None
    return head, total, compressed


def check_complete(path: Path) -> None:
    """Raise CTCFError if ``path`` is a NIfTI file whose voxel data is shorter than its header declares."""
    if not _is_nifti(path):
        return
    head, total, compressed = _read_all(path)
    expected = _expected_bytes(head)
    if expected is not None and total < expected:
        raise CTCFError(
            f"{path} is truncated: {total} bytes{' after decompression' if compressed else ''}, "
            f"its header needs {expected}; copy or export the file again"
        )
