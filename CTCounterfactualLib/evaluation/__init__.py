"""``ctcf evaluate``: the paper's experiments on a cohort (phantoms or the user's volumes), as a report.

cohort -> per-volume experiments on a process pool (volume_task) -> aggregate statistics
(aggregate, stats) -> figures, CSV, JSON and report.md written atomically (writer).
"""
