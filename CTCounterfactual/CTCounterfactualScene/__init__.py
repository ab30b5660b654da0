"""Scene side of the CTCounterfactual Slicer module: MRML nodes, layout, export, the engine process.

Nothing here imports qt or ``slicer.app``: it runs on a bare ``vtkMRMLScene`` (PyPI ``slicer-core``)
so the tests exercise it for real, and the module's Widget only wires buttons to it. No tensor
math either: the engine (``CTCounterfactualLib``) runs in its own process and hands over files.
"""
