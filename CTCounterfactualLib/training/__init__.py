"""Training recipes for the bundled demo models, and tiny random models for tests and the benchmark."""
