"""download.py against a real local HTTP server (127.0.0.1 only) with Range support and configurable misbehaviour."""

from __future__ import annotations

import hashlib
import os
import socket
import sys
from pathlib import Path

import pytest

from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.store.download import cache_dir, download

PAYLOAD = os.urandom(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()
TIMEOUT = 2.0
pytest_plugins = ["http_fixture"]  # the 127.0.0.1 server fixture `serve`


@pytest.fixture
def serve(serve):
    """The shared server fixture, serving this module's PAYLOAD unless told otherwise."""

    def start(mode: str = "good", payload: bytes = PAYLOAD):
        return serve(mode, payload)

    return start


def _part(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def test_good_file(serve, tmp_path):
    srv, url = serve()
    dest = tmp_path / "sub" / "model.ckpt"
    out = download(url, dest, sha256=SHA, size=len(PAYLOAD), progress=False, timeout=TIMEOUT)
    assert out == dest
    assert dest.read_bytes() == PAYLOAD
    assert not _part(dest).exists()
    assert len(srv.requests) == 1 and srv.requests[0]["range"] is None


def test_progress_bar_goes_to_stderr(serve, tmp_path, capsys):
    _, url = serve()
    download(url, tmp_path / "m.ckpt", sha256=SHA, progress=True, timeout=TIMEOUT)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "m.ckpt" in captured.err


def test_cached_file_needs_no_request(serve, tmp_path):
    srv, url = serve()
    dest = tmp_path / "model.ckpt"
    download(url, dest, sha256=SHA, progress=False, timeout=TIMEOUT)
    assert len(srv.requests) == 1
    assert download(url, dest, sha256=SHA.upper(), size=len(PAYLOAD), progress=False, timeout=TIMEOUT) == dest
    assert len(srv.requests) == 1
    srv.stop()  # no server at all: still served from the cache
    assert download(url, dest, sha256=SHA, progress=False, timeout=TIMEOUT) == dest


def test_existing_mismatching_file_is_replaced(serve, tmp_path):
    srv, url = serve()
    dest = tmp_path / "model.ckpt"
    dest.write_bytes(b"old weights")
    download(url, dest, sha256=SHA, progress=False, timeout=TIMEOUT)
    assert dest.read_bytes() == PAYLOAD and len(srv.requests) == 1


def test_existing_mismatching_file_survives_failed_download(serve, tmp_path):
    _, url = serve("corrupt")
    dest = tmp_path / "model.ckpt"
    dest.write_bytes(b"old weights")
    with pytest.raises(CTCFError):
        download(url, dest, sha256=SHA, progress=False, timeout=TIMEOUT)
    assert dest.read_bytes() == b"old weights"
    assert not _part(dest).exists()


def test_truncated_then_resumed(serve, tmp_path):
    _, bad_url = serve("truncate")
    dest = tmp_path / "model.ckpt"
    with pytest.raises(CTCFError, match="resume"):
        download(bad_url, dest, sha256=SHA, size=len(PAYLOAD), progress=False, timeout=TIMEOUT)
    assert not dest.exists()
    part = _part(dest)
    have = part.stat().st_size
    assert 0 < have < len(PAYLOAD)
    assert part.read_bytes() == PAYLOAD[:have]

    good, url = serve()
    download(url, dest, sha256=SHA, size=len(PAYLOAD), progress=False, timeout=TIMEOUT)
    assert good.requests[0]["range"] == f"bytes={have}-"
    assert dest.read_bytes() == PAYLOAD
    assert not part.exists()


def test_wrong_checksum_discards(serve, tmp_path):
    _, url = serve("corrupt")
    dest = tmp_path / "model.ckpt"
    with pytest.raises(CTCFError, match=r"(?i)sha256|checksum") as exc:
        download(url, dest, sha256=SHA, size=len(PAYLOAD), progress=False, timeout=TIMEOUT)
    assert "discarded" in str(exc.value)
    assert SHA in str(exc.value)
    assert not dest.exists()
    assert not _part(dest).exists()


def test_wrong_size_discards(serve, tmp_path):
    _, url = serve()
    dest = tmp_path / "model.ckpt"
    with pytest.raises(CTCFError, match="size") as exc:
        download(url, dest, size=len(PAYLOAD) + 5, progress=False, timeout=TIMEOUT)
    assert str(len(PAYLOAD) + 5) in str(exc.value) and "discarded" in str(exc.value)
    assert not dest.exists() and not _part(dest).exists()


def test_http_404(serve, tmp_path):
    _, url = serve("404")
    dest = tmp_path / "model.ckpt"
    with pytest.raises(CTCFError) as exc:
        download(url, dest, sha256=SHA, progress=False, timeout=TIMEOUT)
    msg = str(exc.value)
    assert "404" in msg
    assert f"download {url} yourself and put it at {dest}" in msg
    assert "\n" not in msg
    assert not dest.exists()


def test_server_killed_mid_transfer(serve, tmp_path):
    srv, url = serve("kill")
    dest = tmp_path / "model.ckpt"
    with pytest.raises(CTCFError, match="resume"):
        download(url, dest, sha256=SHA, size=len(PAYLOAD), progress=False, timeout=TIMEOUT)
    srv.stop()
    assert not dest.exists()
    part = _part(dest)
    if part.exists():  # whatever arrived before the reset is a correct prefix
        assert part.read_bytes() == PAYLOAD[: part.stat().st_size]

    good, url2 = serve()
    download(url2, dest, sha256=SHA, size=len(PAYLOAD), progress=False, timeout=TIMEOUT)
    assert dest.read_bytes() == PAYLOAD
    assert not part.exists()


def test_stalled_server_times_out_and_resumes(serve, tmp_path):
    _, url = serve("stall")
    dest = tmp_path / "model.ckpt"
    with pytest.raises(CTCFError, match="resume"):
        download(url, dest, sha256=SHA, progress=False, timeout=0.3)
    assert not dest.exists()
    have = _part(dest).stat().st_size
    assert have > 0

    good, url2 = serve()
    download(url2, dest, sha256=SHA, progress=False, timeout=TIMEOUT)
    assert good.requests[0]["range"] == f"bytes={have}-"
    assert dest.read_bytes() == PAYLOAD


def test_unreachable_host(tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago: nobody listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/model.ckpt"
    dest = tmp_path / "model.ckpt"
    with pytest.raises(CTCFError) as exc:
        download(url, dest, sha256=SHA, progress=False, timeout=TIMEOUT)
    assert f"download {url} yourself and put it at {dest}" in str(exc.value)
    assert not dest.exists()


def test_server_ignoring_range_restarts(serve, tmp_path):
    srv, url = serve("ignore_range")
    dest = tmp_path / "model.ckpt"
    _part(dest).write_bytes(b"\x00" * 1000)  # a stale .part that does not match the payload
    download(url, dest, sha256=SHA, size=len(PAYLOAD), progress=False, timeout=TIMEOUT)
    assert srv.requests[0]["range"] == "bytes=1000-"
    assert dest.read_bytes() == PAYLOAD
    assert not _part(dest).exists()


def test_part_already_complete_or_too_big(serve, tmp_path):
    srv, url = serve()
    dest = tmp_path / "model.ckpt"
    _part(dest).write_bytes(b"\x00" * (len(PAYLOAD) + 10))
    download(url, dest, sha256=SHA, size=len(PAYLOAD), progress=False, timeout=TIMEOUT)
    assert srv.requests[0]["range"] is None  # size known: restarted clean without asking for a range
    assert dest.read_bytes() == PAYLOAD

    dest.unlink()
    _part(dest).write_bytes(b"\x00" * len(PAYLOAD))  # size unknown: the server answers 416, we restart
    download(url, dest, sha256=SHA, progress=False, timeout=TIMEOUT)
    assert srv.requests[-2]["range"] == f"bytes={len(PAYLOAD)}-"
    assert srv.requests[-1]["range"] is None
    assert dest.read_bytes() == PAYLOAD


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("CTCF_CACHE_DIR", str(tmp_path / "env"))
    assert cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert cache_dir() == tmp_path / "env"
    monkeypatch.delenv("CTCF_CACHE_DIR")
    default = cache_dir()
    assert default.name in ("ctcounterfactual", "Cache")
    assert not (tmp_path / "env").exists() and not (tmp_path / "arg").exists()
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert cache_dir() == tmp_path / "xdg" / "ctcounterfactual"
        monkeypatch.delenv("XDG_CACHE_HOME")
        assert cache_dir() == Path.home() / ".cache" / "ctcounterfactual"
