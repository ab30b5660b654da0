"""Run CTCounterfactual.py on Slicer's real Python layer (5.10, 5.12) with stand-ins for the compiled parts."""
