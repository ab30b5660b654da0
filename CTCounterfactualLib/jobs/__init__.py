"""Whole jobs on files: explain a file (or a manifest of many, ``ctcf batch``) into output folders, the demo."""
