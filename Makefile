# The README's two commands: `make demo` and `make test`. Each creates .venv and installs the
# pinned dependencies (constraints.txt) by itself on first use. `make test-fast` is the edit-run loop.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
OUT ?= out/demo

.PHONY: setup demo test test-fast lint bench models clean

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

# The tests run in parallel (pytest-xdist): most of their time they wait for the ctcf processes they start.
# A module's tests run on one worker (--dist loadscope), so its module-scoped fixtures are made once; the
# session-scoped ones are made once per run, and the longest modules start first (FIRST in
# Testing/Python/conftest.py). PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= 4
PYTEST := $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder --durations=25
# The slowest end-to-end tests (the bundled models at their real size, Ray, whole runs killed and resumed, a warm
# engine, a training), which `make test-fast` leaves out; `make test` and CI run them. Each name covers the test's
# parameters; Testing/Python/test_docs.py checks that each one exists.
T := Testing/Python
SLOW_TESTS := \
	$(T)/test_evaluate.py::test_report_has_every_part_filled_from_the_run \
	$(T)/test_evaluate.py::test_per_volume_predictions_are_the_classifiers \
	$(T)/test_evaluate.py::test_statistics_saliency_identity_and_lung_size \
	$(T)/test_evaluate.py::test_csv_cohort_of_the_users_volumes \
	$(T)/test_evaluate_ray.py::test_evaluate_on_ray_gives_the_local_pools_numbers \
	$(T)/test_evaluate_variants.py::test_a_variants_only_run_reports_every_variant_where_it_applies \
	$(T)/test_batch.py::test_local_and_ray_give_the_same_results \
	$(T)/test_batch.py::test_a_ray_worker_killed_mid_volume_is_restarted_and_the_volume_completes \
	$(T)/test_batch.py::test_a_killed_run_resumes_without_recomputing_the_finished_volumes \
	$(T)/test_slicer_engine.py::test_a_second_generate_reuses_the_models_and_the_encoding \
	$(T)/test_lungseg.py::test_short_training_segments_lungs_and_lung_size_round_trips \
	$(T)/test_wheel.py::test_wheel_runs_the_demo \
	$(T)/test_cli.py::test_demo_command_runs_the_bundled_demo \
	$(T)/test_bundled_models.py::test_demo_prediction_falls_below_threshold \
	$(T)/test_bundled_models.py::test_demo_heatmap_sits_on_the_effusion \
	$(T)/test_bundled_models.py::test_demo_writes_everything \
	$(T)/test_memory_estimate.py::test_estimate_is_within_a_factor_of_two_of_the_measured_peak \
	$(T)/test_memory_estimate.py::test_batch_size_shrinks_under_a_tight_budget \
	$(T)/test_real_sizes.py::test_bundled_targets_stop_on_a_rule_within_60_steps \
	$(T)/test_slicer_journey.py::test_generate_cancel_results_plot_export_and_reopen

test: lint
	$(PYTEST)

test-fast: lint
	$(PYTEST) $(addprefix --deselect ,$(SLOW_TESTS))

# Retrain the bundled demo models on real anatomy and update their catalog entries (CT data from the shared data
# folder, SHARED, not in a clone; CI has it). The VQ-GAN starts from the phantom-trained one (about 10 minutes on 2
# CPU cores), is fine-tuned for 74 steps on LIDC-IDRI-0001's slices, then for 1500 steps on those and the
# abdomen example's (about 20 minutes); demo-vqgan-256 is that model fine-tuned at 256 x 256 on every chest CT but
# the held-out one, keeping its codebook (1200 steps, about 15 minutes). The effusion classifier trains 9 times (4 leave-one-patient-out folds,
# the held-out patient's being the shipped model, and 5 leave-one-family-out folds; about 30 minutes) and writes
# docs/effusion_classifier/.
# Lung-PET-CT-Dx A0001 is held out of every bundled model and measures them.
SHARED ?= ../shared/data
HELDOUT := $(SHARED)/lung_pet_ct_dx_A0001/dicom
LUNG1 := $(SHARED)/pyradiomics_lung1/lung1_image.nrrd
LUNG2 := $(SHARED)/pyradiomics_lung2/lung2_image.nrrd
models: $(STAMP)
	mkdir -p build
	$(BIN)/ctcf train-autoencoder --out build/phantom_vqgan.pt --phantoms 40 \
		--volume Testing/Data/example_ct.nii.gz --steps 2000
	$(BIN)/ctcf train-autoencoder --out build/real_vqgan_74.pt --phantoms 0 \
		--real-ct $(SHARED)/lidc_idri_0001/ct.nii.gz --init build/phantom_vqgan.pt \
		--reseed-codebook --steps 74 --adv-start 200 --batch 6 --crop 64
	$(BIN)/ctcf train-autoencoder --out CTCounterfactualLib/resources/models/demo_vqgan.pt --phantoms 0 \
		--real-ct $(SHARED)/lidc_idri_0001/ct.nii.gz --real-ct Testing/Data/example_ct.nii.gz \
		--init build/real_vqgan_74.pt --reseed-codebook --steps 1500 --adv-start 100000 --batch 16 --crop 64 \
		--heldout $(HELDOUT) --catalog
	$(BIN)/ctcf train-autoencoder --out CTCounterfactualLib/resources/models/demo_vqgan_256.pt --phantoms 0 --size 256 \
		--real-ct $(SHARED)/lidc_idri_0001/ct.nii.gz --real-ct $(LUNG1) --real-ct $(LUNG2) \
		--real-ct Testing/Data/example_ct.nii.gz --init CTCounterfactualLib/resources/models/demo_vqgan.pt \
		--steps 1200 --adv-start 100000 --batch 4 --crop 128 --lr 1e-4 --heldout $(HELDOUT) --catalog
	$(BIN)/ctcf train-classifier --real-ct --out CTCounterfactualLib/resources/models/demo_effusion.pt \
		--also-ct $(LUNG1) --also-ct $(LUNG2) --heldout $(HELDOUT) --train-only-ct Testing/Data/example_ct.nii.gz \
		--folds docs/effusion_classifier --train 24 --eval 40 --epochs 80 --catalog
	$(BIN)/ctcf train-lungseg --out CTCounterfactualLib/resources/models/demo_lungsize.pt --phantoms 40 --train-real --steps 600 \
		--real-ct Testing/Data/example_ct.nii.gz --real-seg Testing/Data/example_seg.nii.gz \
		--heldout $(HELDOUT) --catalog

bench: $(STAMP)
	$(BIN)/python bench/bench_engine.py

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
