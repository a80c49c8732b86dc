"""numba's cache must be writable for whoever runs tcpdoctor, or every compiled loop fails at import."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcpdoctor.sources.pcap import numba_cache


def test_unwritable_package_and_home_fall_back_to_tmp(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/nonexistent/cache")
    monkeypatch.setattr(numba_cache.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(
        numba_cache,
        "_writable",
        lambda p: str(p).startswith(str(tmp_path)) and p.mkdir(parents=True, exist_ok=True) is None,
    )
    numba_cache.choose_cache_dir()
    chosen = numba_cache.os.environ["NUMBA_CACHE_DIR"]
    assert chosen.startswith(str(tmp_path)) and "tcpdoctor-numba-" in chosen


def test_a_user_choice_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/somewhere/mine")
    numba_cache.choose_cache_dir()
    assert numba_cache.os.environ["NUMBA_CACHE_DIR"] == "/somewhere/mine"
