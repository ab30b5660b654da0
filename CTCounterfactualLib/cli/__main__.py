"""``python -m CTCounterfactualLib.cli``: the same as ``ctcf``."""

import sys

from CTCounterfactualLib.cli import main

sys.exit(main())
