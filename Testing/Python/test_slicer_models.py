"""What the panel's model selectors show: catalog entries, their download state and target names."""

from __future__ import annotations

from CTCounterfactualScene.model_choices import model_choices, targets_of_file


def test_bundled_and_downloadable_entries(tmp_path, monkeypatch):
    monkeypatch.setenv("CTCF_CACHE_DIR", str(tmp_path / "cache"))  # an empty cache: nothing downloaded
    autoencoders = {c.name: c for c in model_choices("autoencoder")}
    classifiers = {c.name: c for c in model_choices("classifier")}
    assert autoencoders["demo-vqgan"].state == "bundled" and autoencoders["demo-vqgan"].usable
    assert classifiers["demo-effusion"].targets == ["pleural effusion"]
    assert classifiers["demo-lungsize"].targets == ["lung size"]
    downloadable = [c for c in [*autoencoders.values(), *classifiers.values()] if c.state != "bundled"]
    assert downloadable and all(c.state == "not downloaded" and not c.usable for c in downloadable)
    assert not set(autoencoders) & set(classifiers)
    assert autoencoders["demo-vqgan"].label == "demo-vqgan (bundled)"


def test_targets_of_a_classifier_file(tiny_model_files):
    _, classifier = tiny_model_files
    assert targets_of_file(str(classifier)) == ["effusion", "lung size"]
