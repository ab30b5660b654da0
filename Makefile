# The README's two commands: `make demo` and `make test`. Each creates .venv and installs the
# pinned dependencies (constraints.txt) by itself on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
OUT ?= out/demo

.PHONY: setup demo test lint bench models clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e ".[test]"
	# taming is only a test reference for the VQ-GAN port (its declared deps would pull torchvision/CUDA)
	$(BIN)/pip install -q --disable-pip-version-check --no-deps taming-transformers==0.0.1
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/ctcf demo --out $(OUT)

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -q

# Retrain the bundled demo models (about 10 minutes on 2 CPU cores) and update their catalog entries.
models: $(STAMP)
	$(BIN)/ctcf train-autoencoder --out CTCounterfactualLib/resources/models/demo_vqgan.pt --phantoms 40 \
		--volume Testing/Data/example_ct.nii.gz --steps 2000 --catalog
	$(BIN)/ctcf train-classifier --out CTCounterfactualLib/resources/models/demo_effusion.pt \
		--autoencoder CTCounterfactualLib/resources/models/demo_vqgan.pt --catalog
	$(BIN)/ctcf train-lungseg --out CTCounterfactualLib/resources/models/demo_lungsize.pt --real-ct Testing/Data/example_ct.nii.gz \
		--real-seg Testing/Data/example_seg.nii.gz --catalog

bench: $(STAMP)
	$(BIN)/python bench/bench_engine.py

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
