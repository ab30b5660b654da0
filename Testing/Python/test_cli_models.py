"""``ctcf models list | download | verify | path`` and catalog names in ``ctcf explain``, against 127.0.0.1."""

from __future__ import annotations

import json

from CTCounterfactualLib.cli import main
from CTCounterfactualLib.training.tiny_models import tiny_autoencoder

pytest_plugins = ["http_fixture", "served_catalog"]  # fixture `served`: a catalog served from 127.0.0.1
VQ = "tiny_vqgan_published"


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _listed(out: str) -> dict[str, list[str]]:
    lines = out.strip().splitlines()
    assert lines[0].split() == ["NAME", "KIND", "FORMAT", "TARGETS", "SIZE", "STATE"]
    assert lines[-1].startswith("cache: ")
    return {line.split()[0]: line.split() for line in lines[1:-1]}


def test_list_before_and_after_download(served, capsys):
    rc, out, _ = _run(capsys, "models", "list")
    rows = _listed(out)
    assert rc == 0 and out.strip().splitlines()[-1] == f"cache: {served.cache}"
    assert rows["bundled-clf"][-1] == "bundled" and rows["bundled-clf"][3] == "2"
    assert " ".join(rows["tiny-vqgan"][-2:]) == "not downloaded"
    assert rows["tiny-vqgan"][1:3] == ["autoencoder", "taming-ckpt"] and rows["tiny-vqgan"][4] == "unknown"

    rc, out, err = _run(capsys, "models", "download", "tiny-vqgan")
    assert rc == 0
    assert f"tiny-vqgan: {served.cached('tiny-vqgan', VQ + '.ckpt')} (SHA256 " in out  # recorded on first download
    assert VQ + ".ckpt" in err  # the tqdm bar went to stderr
    rows = _listed(_run(capsys, "models", "list")[1])
    assert rows["tiny-vqgan"][-1] == "downloaded" and " ".join(rows["tiny-clf"][-2:]) == "not downloaded"


def test_download_verify_then_damage(served, capsys):
    assert _run(capsys, "models", "download", "tiny-vqgan", "tiny-clf")[0] == 0
    rc, out, _ = _run(capsys, "models", "verify", "tiny-vqgan")
    assert rc == 0 and out.strip() == "tiny-vqgan: ok (2 files)"
    rc, out, _ = _run(capsys, "models", "verify")
    assert rc == 0 and "offline: not downloaded" in out and "tiny-clf: ok (2 files)" in out

    served.damage(served.cached("tiny-vqgan", VQ + ".ckpt"))
    rc, out, err = _run(capsys, "models", "verify", "tiny-vqgan")
    assert rc == 2 and out.strip() == "tiny-vqgan: DAMAGED"
    assert err.count("\n") == 1 and err.startswith("ctcf: error: model tiny-vqgan is damaged: ")
    assert "ctcf models download tiny-vqgan" in err
    assert _run(capsys, "models", "verify")[0] == 2
    assert _listed(_run(capsys, "models", "list")[1])["tiny-vqgan"][-1] == "damaged"


def test_path_of_missing_and_present_models(served, capsys):
    rc, out, err = _run(capsys, "models", "path", "tiny-vqgan")
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert "run `ctcf models download tiny-vqgan`" in err
    _run(capsys, "models", "download", VQ)  # an alias works too
    rc, out, _ = _run(capsys, "models", "path", "tiny-vqgan")
    assert rc == 0 and out.strip() == str(served.cached("tiny-vqgan", VQ + ".ckpt"))
    rc, out, _ = _run(capsys, "models", "path", "tiny-vqgan", "--config")
    assert rc == 0 and out.strip() == str(served.cached("tiny-vqgan", VQ + ".yaml"))
    rc, out, _ = _run(capsys, "models", "path", "bundled-clf")
    assert rc == 0 and out.strip() == str(served.catalog.parent / "bundled_classifier.pt")
    rc, _, err = _run(capsys, "models", "path", "nope")
    assert rc == 2 and "no model called 'nope'" in err


def test_cache_dir_flag_before_or_after_the_subcommand(served, capsys, tmp_path):
    first, second = tmp_path / "c1", tmp_path / "c2"
    assert _run(capsys, "models", "--cache-dir", str(first), "download", "tiny-clf")[0] == 0
    assert _run(capsys, "models", "download", "tiny-clf", "--cache-dir", str(second))[0] == 0
    assert (first / "tiny-clf" / "tiny_classifier.pt").is_file() and (
        second / "tiny-clf" / "tiny_classifier.pt"
    ).is_file()
    assert not (served.cache / "tiny-clf").exists()  # $CTCF_CACHE_DIR was overridden
    rows = _listed(_run(capsys, "models", "list", "--cache-dir", str(first))[1])
    assert rows["tiny-clf"][-1] == "downloaded"


def test_offline_download_is_one_line_with_manual_instructions(served, capsys):
    rc, out, err = _run(capsys, "models", "download", "offline")
    assert rc == 2 and err.count("\n") == 1
    assert f"yourself and put it at {served.cached('offline', 'far_away.pt')}" in err


def test_explain_with_catalog_names(served, capsys, small_ct, tmp_path):
    common = ["--target", "effusion", "--chunk-size", "8", "--progress", "none", "--max-steps", "60"]
    rc, _, err = _run(
        capsys,
        "explain",
        str(small_ct),
        "--out",
        str(tmp_path / "x"),
        "--autoencoder",
        "tiny-vqgan",
        "--classifier",
        "tiny-clf",
        *common,
    )
    assert rc == 2 and "run `ctcf models download tiny-vqgan`" in err and not (tmp_path / "x").exists()

    assert _run(capsys, "models", "download", "tiny-vqgan", "tiny-clf")[0] == 0
    out_dir = tmp_path / "out"
    rc, out, err = _run(
        capsys,
        "explain",
        str(small_ct),
        "--out",
        str(out_dir),
        "--autoencoder",
        "tiny-vqgan",
        "--classifier",
        "tiny-clf",
        "--batch-size",
        "4",
        *common,
    )
    assert rc == 0, err
    summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    ae, clf = summary["models"]["autoencoder"], summary["models"]["classifier"]
    assert ae["name"] == "tiny-vqgan" and ae["path"] == str(served.cached("tiny-vqgan", VQ + ".ckpt"))
    assert ae["config"]["path"] == str(served.cached("tiny-vqgan", VQ + ".yaml"))
    assert clf["name"] == "tiny-clf" and clf["format"] == "torchscript"
    assert summary["target"]["name"] == "Effusion"  # the catalog's target names
    mem = summary["memory"]
    assert mem["batch_size_requested"] == 4 and mem["batch_size"] == summary["batch_size"] == 4
    assert mem["estimate_mb"] > 0 and mem["available_mb"] > mem["estimate_mb"]

    # the same .ckpt as a path (with a sidecar for the tiny model's convention): it holds pickled training
    # state, so as a plain path it needs the user's trust
    ckpt = tmp_path / "mine" / "vq.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(served.data[VQ + ".ckpt"])
    ckpt.with_suffix(".json").write_text(
        json.dumps({"convention": tiny_autoencoder(0).convention.to_dict()}), encoding="utf-8"
    )
    clf_path = served.cached("tiny-clf", "tiny_classifier.pt")
    args = [
        "explain",
        str(small_ct),
        "--autoencoder",
        str(ckpt),
        "--autoencoder-config",
        str(served.cached("tiny-vqgan", VQ + ".yaml")),
        "--classifier",
        str(clf_path),
        "--classifier-format",
        "torchscript",
    ]
    rc, _, err = _run(capsys, *args, "--out", str(tmp_path / "p"), *common)
    assert rc == 2 and "--trust-checkpoint" in err
    rc, _, err = _run(capsys, *args, "--out", str(tmp_path / "p"), "--trust-checkpoint", *common)
    assert rc == 0, err
    summary = json.loads((tmp_path / "p" / "summary.json").read_text(encoding="utf-8"))
    assert summary["models"]["classifier"]["format"] == "torchscript"
    assert summary["target"]["name"] == "effusion"  # the sidecar's names: a path has no catalog entry


def test_unknown_classifier_format_is_a_usage_error(served, capsys, small_ct, tmp_path):
    _run(capsys, "models", "download", "tiny-vqgan", "tiny-clf")
    rc, _, err = _run(
        capsys,
        "explain",
        str(small_ct),
        "--out",
        str(tmp_path / "o"),
        "--autoencoder",
        "tiny-vqgan",
        "--classifier",
        "tiny-clf",
        "--classifier-format",
        "onnx",
        "--target",
        "effusion",
    )
    assert rc == 2 and "unknown classifier format 'onnx'" in err and "lungmask-r231" in err
