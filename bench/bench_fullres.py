"""Benchmark of a full-resolution CT: the reference's settings vs the fast default vs --faithful, side by side.

What it runs
------------
``explain`` on ``../shared/data/lidc_idri_0001/ct.nii.gz`` (LIDC-IDRI-0001, 512 x 512 x 133) with the
bundled models (``demo-vqgan``, ``demo-lungsize``, target "lung size"), ``joint`` mode and ``scan`` at
chunk 10, each variant in its own child process (``subprocess``), one after the other:

* ``previous``: the reference's settings - search at the input's resolution, raw-gradient lambda
  (``--search-resolution input --lambda-scale reference --output-map reference``), libgomp's default
  OpenMP wait policy (idle threads spin), NCHW convolutions;
* ``passive``: the same with idle OpenMP threads sleeping (``OMP_WAIT_POLICY=PASSIVE``, now the package's
  default): the same numbers, bit for bit;
* ``grid``: the search on the autoencoder's own grid (128 x 128 for ``demo-vqgan``), raw-gradient lambda
  (isolates the grid's gain; its lambdas are comparable with ``previous``/``faithful``);
* ``nchw``: the defaults with the VQ-GAN's convolutions in NCHW memory layout (taming's own);
* ``fast``: the defaults (model grid, scale-free lambda, auto output map, NHWC convolutions on CPU);
* ``faithful``: ``--faithful`` (the reference: every slice decoded at every step); joint only, since in
  scan mode it decodes the whole volume at every step of every chunk (hours on 2 CPU cores).

Per run: wall time of ``explain`` (the CLI's "search" etc. stages are in ``timings``), peak RSS of the
child (``ru_maxrss``, whole process: models, input, outputs), the stop reason and lambda, the predictions,
and against ``previous`` (same raw-gradient lambda) the CF's mean/max absolute HU difference. The input
has no outputs written (the engine's numbers only). If the CT is absent the script says so and exits 0.

Run: ``python bench/bench_fullres.py`` (all of it; about an hour on a busy 2-core CPU) or
``--slices 50:90`` (a 40-slice slab, same in-plane size) and ``--cases joint`` / ``scan``.
``--autoencoder`` / ``--classifier`` take other model files, e.g. the
64 x 64 VQ-GAN and phantom lung-size classifier of commit 9ee28b3 (``git show 9ee28b3:<path>``, each with its
``.json`` sidecar beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

CT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lidc_idri_0001" / "ct.nii.gz"
SHARED_CT = Path("/work/shared/data/lidc_idri_0001/ct.nii.gz")
# today's path also spun idle OpenMP threads (libgomp's default wait policy); the others get the package's
OMP_POLICY = {"previous": ""}  # "" = unset for libgomp (its default), and kept by the package's setdefault
NCHW = {"previous", "passive", "grid", "nchw"}  # the variants that keep the VQ-GAN in NCHW (as before)
VARIANTS = {
    "previous": dict(search_resolution="input", output_map="reference", lambda_scale="reference"),
    "passive": dict(search_resolution="input", output_map="reference", lambda_scale="reference"),
    "grid": dict(search_resolution="model", output_map="reference", lambda_scale="reference"),
    "nchw": dict(),
    "fast": dict(),
    "faithful": dict(faithful=True),
}


def child(spec: dict) -> dict:
    """One explain run; returns its numbers (runs in a fresh process)."""
    import numpy as np
    import torch

    from CTCounterfactualLib.data.volume_io import read_volume
    from CTCounterfactualLib.method.explain import ExplainConfig, explain
    from CTCounterfactualLib.method.search import next_lambda
    from CTCounterfactualLib.models import autoencoder
    from CTCounterfactualLib.params import SearchParams
    from CTCounterfactualLib.store.open_models import open_autoencoder, open_named_classifier

    if spec["variant"] in NCHW:
        autoencoder.CPU_MEMORY_FORMAT = torch.contiguous_format
    ae, _, _ = open_autoencoder(spec["autoencoder"])
    clf, _, _ = open_named_classifier(spec["classifier"], None)
    hu = read_volume(spec["ct"]).array
    if spec["slices"]:
        a, b = spec["slices"]
        hu = np.ascontiguousarray(hu[a:b])
    opts = dict(VARIANTS[spec["variant"]])
    search = SearchParams(lambda_scale=opts.pop("lambda_scale", "auto"))
    cfg = ExplainConfig(target="lung size", mode=spec["mode"], chunk_size=10, search=search, **opts)
    t0 = time.perf_counter()
    r = explain(hu, ae, clf, cfg)
    wall = time.perf_counter() - t0
    out = Path(spec["cf_file"])
    np.save(out, r.counterfactual_hu)
    c = r.chunks[r.chosen]
    steps, lam = 0, 0.0
    while lam > c.lam:  # schedule steps to the CF's lambda (the search evaluated one more where a rule fired)
        lam, steps = next_lambda(lam, search.step_size), steps + 1
    return {
        "wall_s": wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "timings": r.timings,
        "lambda": c.lam,
        "stop": c.stop_reason,
        "steps": steps,
        "chosen": [c.start, c.stop],
        "predictions": r.predictions,
        "fidelity": r.fidelity,
        "threads": torch.get_num_threads(),
    }


def run_case(mode: str, variant: str, ct: Path, slices, workdir: Path, models: tuple[str, str]) -> dict:
    spec = {"mode": mode, "variant": variant, "ct": str(ct), "slices": slices}
    spec["autoencoder"], spec["classifier"] = models
    spec["cf_file"] = str(workdir / f"cf_{mode}_{variant}.npy")
    env = {**os.environ, "OMP_WAIT_POLICY": OMP_POLICY.get(variant, "PASSIVE")}
    res = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, check=False, env=env
    )
    if res.returncode:
        raise SystemExit(f"{mode}/{variant} failed:\n{res.stderr[-3000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["cf_file"] = spec["cf_file"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--slices", help="A:B slab of the CT (default: all 133 slices)")
    ap.add_argument("--cases", default="joint,scan", help="joint, scan or both (default both)")
    ap.add_argument("--variants", default="previous,passive,grid,nchw,fast,faithful")
    ap.add_argument("--workdir", default="/tmp/ctcf_bench_fullres")
    ap.add_argument("--autoencoder", default="demo-vqgan", help="catalog name or file (default demo-vqgan)")
    ap.add_argument("--classifier", default="demo-lungsize", help="catalog name or file (default demo-lungsize)")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    ct = CT if CT.is_file() else SHARED_CT
    if not ct.is_file():
        print(f"skipped: the full-resolution CT {CT} is absent (it is in ../shared/data, not in the repository)")
        return 0
    import numpy as np

    slices = tuple(int(v) for v in args.slices.split(":")) if args.slices else None
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"# Full-resolution CT: {ct.name}, slices {args.slices or 'all'}; load {os.getloadavg()[0]:.1f}")
    print(f"# models: {args.autoencoder} + {args.classifier}")
    for mode in args.cases.split(","):
        rows = {}
        for variant in args.variants.split(","):
            if mode == "scan" and variant == "faithful":
                continue
            print(f"running {mode}/{variant} ...", file=sys.stderr, flush=True)
            rows[variant] = run_case(mode, variant, ct, slices, workdir, (args.autoencoder, args.classifier))
            print(json.dumps({mode: {variant: rows[variant]}}), file=sys.stderr, flush=True)
        ref = rows.get("previous")
        print(f"\n## {mode} (chunk 10)\n")
        print(
            "| variant | wall s | x previous | peak RSS MiB | search s | lambda | steps | stop | "
            "pred recon | pred CF | CF vs previous: mean / max abs HU |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for name, r in rows.items():
            speed = f"{ref['wall_s'] / r['wall_s']:.1f}x" if ref else "-"
            diff = "-"
            if ref and name != "previous":
                d = np.abs(np.load(r["cf_file"]) - np.load(ref["cf_file"]))
                diff = f"{d.mean():.2f} / {d.max():.0f}"
            p = r["predictions"]
            print(
                f"| {name} | {r['wall_s']:.0f} | {speed} | {r['peak_rss_mb']:.0f} | "
                f"{r['timings'].get('search', 0):.0f} | {r['lambda']:g} | {r['steps']} | {r['stop']} | "
                f"{p['reconstruction']:.4f} | {p['counterfactual']:.4f} | {diff} |"
            )
    print(f"\nload average after: {os.getloadavg()[0]:.1f} (2 CPU cores shared)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
