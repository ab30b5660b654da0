"""Jobs: whole runs built on the engine (one file, many volumes, the demo)."""
