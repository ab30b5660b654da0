"""The contract between the engine and its readers (CLI, Slicer module, batch, tests), written once (torch-free).

An explanation folder holds the files below; ``chunks.csv`` and ``sweep/sweep.csv`` have the listed
columns; ``summary.json`` has the listed keys. A ``ctcf batch`` folder holds one explanation folder
per volume plus ``results.csv`` (``RESULTS_COLUMNS``) and ``batch.json``. Progress goes out as JSON
lines with the keys in ``PROGRESS_KEYS``, stage names from ``STAGES``, ending with ``DONE`` or ``ERROR``.
"""

from __future__ import annotations

# output folder of one explanation
COUNTERFACTUAL = "counterfactual.nrrd"
RECONSTRUCTION = "reconstruction.nrrd"
HEATMAP = "heatmap.nrrd"
DIFFERENCE = "difference.nrrd"
CHUNKS_CSV = "chunks.csv"
PREDICTIONS_PNG = "predictions.png"
SUMMARY_JSON = "summary.json"  # written last: its presence marks a complete result
VOLUME_FILES = {
    "counterfactual": COUNTERFACTUAL,
    "reconstruction": RECONSTRUCTION,
    "heatmap": HEATMAP,
    "difference": DIFFERENCE,
}
OUTPUT_FILES = (*VOLUME_FILES.values(), CHUNKS_CSV, PREDICTIONS_PNG, SUMMARY_JSON)
CHUNK_COLUMNS = (
    "chunk_start",
    "chunk_end",  # exclusive
    "prediction_before",
    "prediction_min",
    "lambda",
    "prediction_cf",
    "stop_reason",
)
CHUNK_NUMERIC_COLUMNS = CHUNK_COLUMNS[:-1]
SWEEP_DIR = "sweep"  # optional (--sweep): frame_NN.nrrd slabs of the output chunk + sweep.csv
SWEEP_CSV = "sweep.csv"
SWEEP_COLUMNS = ("frame", "file", "lambda", "prediction", "slice_start", "slice_end")


def sweep_frame_name(i: int) -> str:
    return f"frame_{i:02d}.nrrd"


# summary.json: top-level keys, and the keys of its nested records that readers use
SUMMARY_KEYS = (
    "ctcf_version",
    "torch_version",
    "platform",
    "input",
    "models",
    "target",
    "predictions",
    "mode",
    "faithful",
    "slices",
    "chunk_size",
    "output_chunk",
    "lambdas",
    "chunks",
    "search",
    "batch_size",
    "device",
    "timings_s",
    "peak_memory_mb",
    "memory",
    "search_resolution",  # where the search ran: "model" (the autoencoder's grid) or "input"
    "search_grid",  # [rows, cols] of that grid
    "output_map",  # "reference" or "calibrated": how the decoder's output became HU
    "lambda_scale",  # "auto" or "reference": what one unit of lambda is
    "counterfactual",  # "detail" (input + the decoder's change) or "decoded" (the reference's D(z'))
    "direction",  # "lower" or "raise"
    "difference",  # what difference.nrrd is: "counterfactual - input" or "counterfactual - reconstruction"
    "metrics",  # validity, proximity, concentration (and region) of the written CF: method/metrics.py
    "fidelity",  # the autoencoder on this input: FIDELITY_KEYS
    # one-line messages for the user, printed as "ctcf: warning: ...": the input does not look like the CT the
    # models expect (jobs/checks.py), or the autoencoder does not reproduce it (method/fidelity.py)
    "warnings",
    "flags",  # {"code", "message"}: the result is not to be read as an explanation (jobs/checks.py)
)
FIDELITY_KEYS = ("mae_hu_body", "slope", "intercept", "body_voxels", "output_map")
FLAG_KEYS = ("code", "message")
PREDICTION_KEYS = ("input", "reconstruction", "counterfactual", "counterfactual_min")
OUTPUT_CHUNK_KEYS = ("start", "end", "lambda")  # end exclusive

# progress: one JSON object per line on stdout
PROGRESS_KEYS = ("stage", "done", "total", "message")
STAGES = ("load", "encode", "decode", "gradient", "search", "write")
DONE = "done"
ERROR = "error"

# ctcf batch: DIR/<id>/ per volume (the files above), DIR/results.csv, DIR/batch.json
MANIFEST_COLUMNS = ("path", "id", "label", "mask", "slices", "target")  # path required; slices, target override
BATCH_RESULTS_CSV = "results.csv"  # one row per finished volume, in manifest order
BATCH_SETTINGS_JSON = "batch.json"  # the run's options: a resumed run must use the same
BATCH_STAGE = "batch"  # progress: done/total volumes of this run, with id, status and eta_s (seconds left)
BATCH_OK, BATCH_FAILED = "ok", "failed"
RESULTS_COLUMNS = (
    "id",
    "status",
    "path",
    "label",
    "target",
    "prediction_input",
    "prediction_reconstruction",
    "prediction_counterfactual",
    "prediction_counterfactual_min",
    "lambda",
    "chunk_start",
    "chunk_end",  # exclusive
    "valid",  # the CF past the classifier's threshold (summary.json's metrics)
    "proximity_hu",  # mean |CF - input| in the body on the CF's slices
    "concentration_top1pct",  # the share of that change its top 1 % of voxels carry
    "heatmap_share_in_mask",  # with a mask: the heatmap's share of mass inside it,
    "heatmap_share_near_mask",  # and within 5 mm of it
    "seconds",
    "peak_memory_mb",
    "error",  # one line, for status failed
)
TIMING_COLUMNS = ("seconds", "peak_memory_mb")  # what differs between two runs of the same batch
