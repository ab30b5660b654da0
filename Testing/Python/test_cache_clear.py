"""Clearing the model cache: the downloaded catalog models and their recorded hashes go, nothing else."""

from __future__ import annotations

from CTCounterfactualLib.store.cache import HASHES_FILE, cached_files, clear_cache, model_states
from CTCounterfactualLib.store.catalog import read_catalog


def test_clear_removes_downloads_and_hashes_only(tmp_path):
    cache = tmp_path / "cache"
    downloadable = [e for e in read_catalog().values() if not e.bundled]
    written = 0
    for entry in downloadable[:2]:
        for f in entry.files:
            path = cache / entry.name / f.name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x" * 1000)
            written += 1000
    (cache / downloadable[0].name / "weights.pt.part").write_bytes(b"y" * 10)  # an interrupted download
    (cache / HASHES_FILE).write_text("{}", encoding="utf-8")
    (cache / "notes.txt").write_text("the user's own file", encoding="utf-8")
    files = cached_files(cache)
    assert len(files) == sum(len(e.files) for e in downloadable[:2]) + 2
    freed = clear_cache(cache)
    assert freed == written + 10 + 2
    assert sorted(p.name for p in cache.iterdir()) == ["notes.txt"]
    assert cached_files(cache) == [] and clear_cache(cache) == 0
    states = dict((e.name, s) for e, s in model_states(cache))
    assert all(states[e.name] == "not downloaded" for e in downloadable)
    assert all(states[e.name] == "bundled" for e in read_catalog().values() if e.bundled)
