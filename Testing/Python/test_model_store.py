"""Catalog models on disk: states, verified downloads from a 127.0.0.1 server, first-download hashes, names."""

from __future__ import annotations

import hashlib
import json

import pytest

from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.models.autoencoder import PUBLISHED_CT_CONVENTION
from CTCounterfactualLib.store.cache import (
    download_model,
    local_files,
    local_path,
    model_states,
    recorded_hashes,
    resolve_model,
    target_names,
    verify_model,
)
from CTCounterfactualLib.store.catalog import CATALOG_PATH, ModelFile, find_entry, read_catalog, register
from CTCounterfactualLib.store.open_models import open_autoencoder, open_named_classifier

pytest_plugins = ["http_fixture", "served_catalog"]  # fixture `served`: a catalog served from 127.0.0.1
VQ = "tiny_vqgan_published"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _states(cache=None) -> dict[str, str]:
    return {e.name: s for e, s in model_states(cache)}


def test_bundled_catalog_has_the_published_models():
    entries = read_catalog(CATALOG_PATH)
    assert {"demo-vqgan", "demo-effusion", "demo-lungsize", "ct-vqgan", "lungmask-r231", "merlin-phecodes"} <= set(
        entries
    )
    vq = entries["ct-vqgan"]
    assert vq.kind == "autoencoder" and vq.format == "taming-ckpt" and not vq.bundled
    assert [f.role for f in vq.files] == ["weights", "config"]
    base = "https://github.com/ieee8023/ct-counterfactuals/releases/download/init/2023-12-25T10-26-40_ct2_vqgan256_sddd"
    assert [f.urls[0] for f in vq.files] == [base + ".ckpt", base + ".yaml"]
    assert vq.convention == PUBLISHED_CT_CONVENTION.to_dict()
    assert find_entry("2023-12-25T10-26-40_ct2_vqgan256_sddd", CATALOG_PATH) is vq or (
        find_entry("2023-12-25T10-26-40_ct2_vqgan256_sddd", CATALOG_PATH).name == "ct-vqgan"
    )
    lm = entries["lungmask-r231"].files[0]
    assert lm.urls[0] == "https://github.com/JoHof/lungmask/releases/download/v0.0/unet_r231-d5d2fc3d.pth"
    assert lm.sha256_prefix == "d5d2fc3d" and lm.sha256 is None  # the prefix is all that is published
    merlin = entries["merlin-phecodes"]
    assert merlin.format == "merlin-i3resnet152" and merlin.n_targets() == 1692
    assert merlin.files[0].urls[0].startswith("https://huggingface.co/stanfordmimi/Merlin/resolve/main/")
    for e in entries.values():  # every entry says where it comes from and under which terms
        assert e.license and (e.bundled or (e.citation and e.sources))
        for f in [] if e.bundled else e.files:
            assert f.urls and (f.sha256 is None or len(f.sha256) == 64)


def test_states_before_and_after_download(served):
    assert _states() == {
        "bundled-clf": "bundled",
        "tiny-vqgan": "not downloaded",
        "tiny-clf": "not downloaded",
        "with-targets": "not downloaded",
        "prefixed": "not downloaded",
        "bad-prefix": "not downloaded",
        "mirrored": "not downloaded",
        "offline": "not downloaded",
    }
    seen: list[tuple[str, int, int | None]] = []
    paths = download_model("tiny-vqgan", progress=lambda name, done, total: seen.append((name, done, total)))
    assert [p.name for p in paths] == [f"{VQ}.ckpt", f"{VQ}.yaml"]
    assert all(p.read_bytes() == served.data[p.name] for p in paths)
    assert _states()["tiny-vqgan"] == "downloaded" and _states()["tiny-clf"] == "not downloaded"
    ckpt_events = [s for s in seen if s[0] == f"{VQ}.ckpt"]
    assert ckpt_events[-1][1] == len(served.data[f"{VQ}.ckpt"])  # progress reaches the file size
    assert [d for _, d, _ in ckpt_events] == sorted(d for _, d, _ in ckpt_events)
    assert not any(served.cache.rglob("*.part"))


def test_first_download_records_the_hash_then_detects_a_changed_upstream_file(served):
    download_model("tiny-vqgan")
    rec = recorded_hashes()[f"tiny-vqgan/{VQ}.ckpt"]
    assert rec["sha256"] == sha(served.data[f"{VQ}.ckpt"]) and rec["how"] == "download"
    assert rec["bytes"] == len(served.data[f"{VQ}.ckpt"]) and rec["url"] == served.url(f"{VQ}.ckpt")
    n = len(served.server.requests)
    download_model("tiny-vqgan")  # verified against the record: nothing fetched again
    assert len(served.server.requests) == n

    ckpt = served.cached("tiny-vqgan", f"{VQ}.ckpt")
    ckpt.unlink()  # upstream replaces the file with something else; the record still holds the first hash
    changed = bytearray(served.data[f"{VQ}.ckpt"])
    changed[100] ^= 0xFF
    served.server.files[f"/files/{VQ}.ckpt"] = bytes(changed)
    with pytest.raises(CTCFError, match=r"SHA256") as exc:
        download_model("tiny-vqgan")
    assert rec["sha256"] in str(exc.value) and "\n" not in str(exc.value)
    assert not ckpt.exists() and recorded_hashes()[f"tiny-vqgan/{VQ}.ckpt"]["sha256"] == rec["sha256"]


def test_verify_detects_damage_and_size_changes(served):
    download_model("tiny-vqgan")
    assert [p.name for p in verify_model("tiny-vqgan")] == [f"{VQ}.ckpt", f"{VQ}.yaml"]
    ckpt = served.cached("tiny-vqgan", f"{VQ}.ckpt")
    served.damage(ckpt)  # same size, new mtime: `list` re-hashes it
    assert _states()["tiny-vqgan"] == "damaged"
    with pytest.raises(CTCFError, match="damaged") as exc:
        verify_model("tiny-vqgan")
    assert "ctcf models download tiny-vqgan" in str(exc.value)
    ckpt.write_bytes(served.data[f"{VQ}.ckpt"] + b"x")  # a longer file: caught by the recorded size
    assert _states()["tiny-vqgan"] == "damaged"
    yaml_file = served.cached("tiny-vqgan", f"{VQ}.yaml")
    yaml_file.write_bytes(b"x")  # catalog size known for the YAML
    with pytest.raises(CTCFError, match="bytes, expected"):
        verify_model("tiny-vqgan")


def test_known_catalog_hash_rejects_a_corrupt_download(served):
    served.server.mode = "corrupt"
    with pytest.raises(CTCFError, match="discarded"):
        download_model("tiny-clf")
    assert _states()["tiny-clf"] == "not downloaded"
    served.server.mode = "good"
    download_model("tiny-clf")
    assert _states()["tiny-clf"] == "downloaded"
    assert "tiny-clf/tiny_classifier.pt" not in recorded_hashes()  # the catalog knows it: nothing to record


def test_sha256_prefix_is_checked_on_first_download(served):
    download_model("prefixed")
    assert recorded_hashes()["prefixed/lungmask_like.pth"]["sha256"].startswith(
        sha(served.data["lungmask_like.pth"])[:8]
    )
    with pytest.raises(CTCFError, match="does not start with the published"):
        download_model("bad-prefix")
    assert not served.cached("bad-prefix", "lungmask_like.pth").exists()
    assert "bad-prefix/lungmask_like.pth" not in recorded_hashes()


def test_mirror_used_when_the_first_url_fails(served):
    (path,) = download_model("mirrored")
    assert path.read_bytes() == served.data["tiny_classifier.pt"]
    assert [r["path"] for r in served.server.requests] == ["/files/gone.pt", "/files/tiny_classifier.pt"]


def test_offline_gives_manual_instructions(served):
    with pytest.raises(CTCFError) as exc:
        download_model("offline")
    msg = str(exc.value)
    dest = served.cached("offline", "far_away.pt")
    assert "\n" not in msg and f"yourself and put it at {dest}" in msg
    assert _states()["offline"] == "not downloaded"


def test_local_path_of_missing_and_present_models(served):
    with pytest.raises(CTCFError, match=r"run `ctcf models download tiny-vqgan`"):
        local_path("tiny-vqgan")
    with pytest.raises(CTCFError, match="no model called 'nope'"):
        local_path("nope")
    download_model(VQ)  # by alias
    files = local_files("tiny-vqgan")
    assert files == {
        "weights": served.cached("tiny-vqgan", f"{VQ}.ckpt"),
        "config": served.cached("tiny-vqgan", f"{VQ}.yaml"),
    }
    assert local_path("bundled-clf") == served.catalog.parent / "bundled_classifier.pt"


def test_cache_argument_overrides_the_environment(served, tmp_path):
    other = tmp_path / "other_cache"
    download_model("tiny-clf", other)
    assert (other / "tiny-clf" / "tiny_classifier.pt").is_file()
    assert _states(other)["tiny-clf"] == "downloaded" and _states()["tiny-clf"] == "not downloaded"


def test_pickle_policy(served):
    """A Lightning .ckpt with pickled training state loads by catalog name once its download is verified;
    the same file as a plain path, or put in place by hand, needs --trust-checkpoint."""
    download_model("tiny-vqgan")
    ckpt = served.cached("tiny-vqgan", f"{VQ}.ckpt")
    assert resolve_model("tiny-vqgan", "autoencoder").trusted
    ae, path, config = open_autoencoder("tiny-vqgan")
    assert path == ckpt and config == served.cached("tiny-vqgan", f"{VQ}.yaml") and ae.name == "tiny-vqgan"
    assert ae.convention.size == 32 and ae.convention.rot90_k == 1  # the catalog's convention
    with pytest.raises(CTCFError, match="--trust-checkpoint"):
        open_autoencoder(str(ckpt), config)
    with pytest.raises(CTCFError, match="--autoencoder-convention"):  # a path brings no catalog convention
        open_autoencoder(str(ckpt), config, trust_checkpoint=True)
    ae, _, _ = open_autoencoder(str(ckpt), config, trust_checkpoint=True, convention_spec="tiny-vqgan")
    assert ae.convention.size == 32 and ae.convention.rot90_k == 1

    hashes = served.cache / "hashes.json"
    hashes.unlink()  # as if the user had downloaded the files by hand
    assert not resolve_model("tiny-vqgan", "autoencoder").trusted
    assert json.loads(hashes.read_text(encoding="utf-8"))[f"tiny-vqgan/{VQ}.ckpt"]["how"] == "verify"
    with pytest.raises(CTCFError, match="--trust-checkpoint"):
        open_autoencoder("tiny-vqgan")
    served.damage(ckpt)
    with pytest.raises(CTCFError, match="damaged"):
        open_autoencoder("tiny-vqgan", trust_checkpoint=True)


def test_hand_placed_file_is_recorded_by_verify(served):
    served.place_by_hand("prefixed", "lungmask_like.pth")
    assert _states()["prefixed"] == "downloaded"
    verify_model("prefixed")
    rec = recorded_hashes()["prefixed/lungmask_like.pth"]
    assert rec["how"] == "verify" and rec["sha256"] == sha(served.data["lungmask_like.pth"])
    served.damage(served.cached("prefixed", "lungmask_like.pth"))
    with pytest.raises(CTCFError, match="damaged"):
        verify_model("prefixed")


def test_named_classifier_gets_catalog_format_and_target_names(served):
    download_model("tiny-clf")
    clf, path, fmt = open_named_classifier("tiny-clf")
    assert fmt == "torchscript" and path.name == "tiny_classifier.pt"
    assert clf.targets == ["Effusion", "Lung Size"] and clf.name == "tiny-clf"
    with pytest.raises(CTCFError, match="is a classifier, not a autoencoder|not a autoencoder"):
        open_autoencoder("tiny-clf")
    with pytest.raises(CTCFError, match="neither a file nor a catalog model name"):
        open_named_classifier("no-such-model")
    with pytest.raises(CTCFError, match="classifier file not found: models/missing.pt"):
        open_named_classifier("models/missing.pt")


def test_target_names_from_a_downloaded_targets_file(served):
    entry = read_catalog()["with-targets"]
    assert target_names(entry) == [] and entry.n_targets() == 2  # declared count until the file is there
    download_model("with-targets")
    assert target_names(entry) == ["Alpha fever", "Beta; pleural effusion"]
    clf, _, _ = open_named_classifier("with-targets")
    assert clf.targets == ["Alpha fever", "Beta; pleural effusion"]
    assert clf.target_index("beta; PLEURAL effusion") == 1


def test_old_catalog_entries_and_register_stay_compatible(tmp_path):
    catalog = tmp_path / "catalog.json"
    model = tmp_path / "m.pt"
    model.write_bytes(b"weights")
    (tmp_path / "m.json").write_text(json.dumps({"convention": {"size": 64}}), encoding="utf-8")
    register(model, "mine", "classifier", ["a"], {"steps": 1}, "note", catalog=catalog)
    doc = json.loads(catalog.read_text(encoding="utf-8"))
    assert doc["models"][0] == {
        "name": "mine",
        "kind": "classifier",
        "format": "torchscript",
        "file": "m.pt",
        "sha256": sha(b"weights"),
        "bytes": 7,
        "targets": ["a"],
        "convention": {"size": 64},
        "training": {"steps": 1},
        "notes": "note",
    }
    e = read_catalog(catalog)["mine"]
    assert e.bundled and e.weights() == ModelFile(name="m.pt", bytes=7, sha256=sha(b"weights"))

    # retraining replaces the weights and the record but keeps the licence written for the entry
    doc["models"][0]["license"] = "Apache-2.0 (trained on X)"
    catalog.write_text(json.dumps(doc), encoding="utf-8")
    model.write_bytes(b"retrained")
    register(model, "mine", "classifier", ["a"], {"steps": 2}, "note", catalog=catalog)
    (again,) = json.loads(catalog.read_text(encoding="utf-8"))["models"]
    assert again["license"] == "Apache-2.0 (trained on X)"
    assert again["sha256"] == sha(b"retrained") and again["training"] == {"steps": 2}


def test_malformed_entries_are_refused(tmp_path):
    catalog = tmp_path / "c.json"
    catalog.write_text(json.dumps({"models": [{"name": "x", "kind": "classifier"}]}), encoding="utf-8")
    with pytest.raises(CTCFError, match="either a bundled 'file' or downloadable 'files'"):
        read_catalog(catalog)
    catalog.write_text(
        json.dumps({"models": [{"name": "x", "kind": "classifier", "files": [{"name": "../a"}]}]}), encoding="utf-8"
    )
    with pytest.raises(CTCFError, match="plain file name"):
        read_catalog(catalog)
