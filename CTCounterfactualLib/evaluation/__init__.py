"""``ctcf evaluate``: the paper's experiments on a cohort (phantoms or the user's volumes), as a report.

cohort -> per-volume experiments on the batch executors (volume_task, jobs.executors) -> aggregate statistics
(aggregate, stats) -> figures, CSV, JSON and report.md written atomically (writer).
"""
