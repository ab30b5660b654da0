"""Throughput of ``ctcf batch``: the same manifest on the local process pool and on a local Ray, side by side.

Builds a manifest of ``--volumes`` volumes (chest phantoms with and without an effusion, alternating with
crops of the bundled real CT, ``--slices`` slices of 64 x 64), explains it with the bundled models
(``demo-vqgan``, ``demo-effusion``; scan mode, ``--chunk-size``, the reference search defaults) with
``--executor local`` and with ``--executor ray`` (a local Ray started by the run, as on a laptop), in the
order local, ray, ray, local (so a load that drifts during the runs weighs on both alike), each with
``--workers`` workers into its own empty folder, and prints a Markdown table: wall time
of the whole command (Ray's start-up included), volumes per minute, the mean and median seconds one
volume took inside its worker (results.csv), and what a cohort of ``--cohort`` volumes of this kind would
take at the measured rate. All runs must give the same results.csv apart from seconds and peak memory.

    .venv/bin/python bench/bench_batch.py                      # 8 volumes of 16 slices, 2 workers
    .venv/bin/python bench/bench_batch.py --volumes 4 --slices 8   # a quick look
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402

from CTCounterfactualLib.cli import main  # noqa: E402
from CTCounterfactualLib.data.phantom import PhantomSpec, make_phantom  # noqa: E402
from CTCounterfactualLib.data.volume_io import Geometry, read_volume, write_volume  # noqa: E402
from CTCounterfactualLib.protocol import BATCH_RESULTS_CSV, TIMING_COLUMNS  # noqa: E402

CT = REPO / "Testing" / "Data" / "example_ct.nii.gz"


def ct_crop(dest: Path, z0: int, slices: int) -> None:
    """Slices z0:z0+slices of the bundled CT, rows 20:84 and columns 30:94, with the matching geometry."""
    vol = read_volume(CT)
    image = sitk.ReadImage(str(CT))
    origin = image.TransformIndexToPhysicalPoint((30, 20, z0))
    geometry = Geometry((64, 64, slices), vol.geometry.spacing, tuple(float(v) for v in origin), vol.geometry.direction)
    write_volume(vol.array[z0 : z0 + slices, 20:84, 30:94], geometry, dest)


def make_manifest(folder: Path, n: int, slices: int) -> Path:
    rows = ["path,id"]
    depth = read_volume(CT).array.shape[0]
    for i in range(n):
        name = f"v{i:03d}"
        if i % 2 == 0:
            ph = make_phantom(
                PhantomSpec(seed=7000 + i, slices=slices, size=64, effusion=("right", "none")[i % 4 // 2])
            )
            write_volume(ph.hu, ph.geometry, folder / f"{name}.nrrd")
        else:
            ct_crop(folder / f"{name}.nrrd", (i * 13) % (depth - slices), slices)
        rows.append(f"{name}.nrrd,{name}")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder / "manifest.csv"


def run(manifest: Path, out: Path, executor: str, args) -> tuple[float, list[dict]]:
    argv = ["batch", str(manifest), "--out", str(out), "--autoencoder", "demo-vqgan", "--classifier", "demo-effusion"]
    argv += ["--target", "0", "--chunk-size", str(args.chunk_size), "--device", "cpu", "--progress", "none"]
    argv += ["--executor", executor, "--workers", str(args.workers)]
    t0 = time.perf_counter()
    rc = main(argv)
    wall = time.perf_counter() - t0
    with open(out / BATCH_RESULTS_CSV, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if rc != 0 or any(r["status"] != "ok" for r in rows):
        raise SystemExit(f"{executor}: exit {rc}, rows {rows}")
    return wall, rows


def main_bench() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--volumes", type=int, default=8)
    ap.add_argument("--slices", type=int, default=16)
    ap.add_argument("--chunk-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cohort", type=int, default=399, help="cohort size to project (the paper's: 399)")
    ap.add_argument(
        "--order", default="local,ray,ray,local", help="runs in this order (default ABBA, so drifting load cancels)"
    )
    args = ap.parse_args()
    print(
        f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}; load average before: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(
        f"- manifest: {args.volumes} volumes of {args.slices} x 64 x 64 (phantoms and crops of the bundled CT); "
        f"bundled models; scan, chunk size {args.chunk_size}, reference search defaults; {args.workers} workers"
    )
    order = args.order.split(",")
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        tmp = Path(tmp)
        manifest = make_manifest(tmp, args.volumes, args.slices)
        runs = [(ex, *run(manifest, tmp / f"{k}_{ex}", ex, args)) for k, ex in enumerate(order)]
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]  # noqa: E731
    same = all(strip(rows) == strip(runs[0][2]) for _, _, rows in runs)
    print(
        f"- load average after: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"results.csv identical apart from seconds and peak memory in all runs: {same}\n"
    )
    print(
        f"| run | executor | wall (s) | volumes / min | s per volume in its worker (mean / median) | "
        f"{args.cohort} such volumes at this rate |"
    )
    print("|---:|---|---:|---:|---:|---:|")
    walls: dict[str, list[float]] = {}
    for k, (ex, wall, rows) in enumerate(runs, start=1):
        secs = [float(r["seconds"]) for r in rows]
        rate = len(rows) / wall * 60
        walls.setdefault(ex, []).append(wall)
        print(
            f"| {k} | {ex} | {wall:.1f} | {rate:.2f} | {statistics.mean(secs):.1f} / {statistics.median(secs):.1f} | "
            f"{args.cohort / rate:.0f} min |"
        )
    if {"local", "ray"} <= walls.keys():
        local, ray = statistics.mean(walls["local"]), statistics.mean(walls["ray"])
        print(f"\nmean wall: local {local:.1f} s, ray {ray:.1f} s; local / ray = {local / ray:.2f}")


if __name__ == "__main__":
    main_bench()
