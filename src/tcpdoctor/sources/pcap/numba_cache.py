"""Where numba keeps its compiled loops: imported before numba by fastpath.py and tracker.py.

numba caches next to the source (``__pycache__``) and falls back to the user's cache
directory; when neither is writable (a root-installed venv run by another user whose HOME
does not exist, e.g. ``nobody``) every ``@njit(cache=True)`` fails at import with "no locator
available". Choose a writable directory first, unless the user chose one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def choose_cache_dir() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    if _writable(Path(__file__).parent / "__pycache__"):
        return  # numba's default works
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tcpdoctor" / "numba"
    fallback = Path(tempfile.gettempdir()) / f"tcpdoctor-numba-{os.getuid()}"
    for candidate in (home, fallback):
        if _writable(candidate):
            os.environ["NUMBA_CACHE_DIR"] = str(candidate)
            return


choose_cache_dir()
