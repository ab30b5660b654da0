"""Whole jobs on files: explain a file into an output folder, the demo and its report."""
