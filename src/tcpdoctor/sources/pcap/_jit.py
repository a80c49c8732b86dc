"""The compiled kernels of the capture path: built ahead of time, or numba's JIT.

``make install`` compiles every kernel the Python side calls (framing, decoding, tracking,
the HTTP/1.1 screen, the JSON lines, the table rebuild) into one extension module,
``_pcapaot``, with numba's ahead-of-time compiler (:mod:`tcpdoctor.sources.pcap.aot_build`).
Importing it costs milliseconds, where ``import numba`` and loading the cached JIT code cost
~0.5 s of every ``tcpdoctor pcap`` run. The module is used only when the stamp written beside
it matches the hash of the kernel sources (an edited kernel falls back to the JIT, never to
stale code) and ``TCPDOCTOR_JIT`` is not set; otherwise :func:`njit` is numba's and the
kernels compile (and cache) as before. In AOT mode :func:`njit` leaves the Python functions
as they are: each kernel module then rebinds its exported names to the extension's.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
# every file whose code is compiled into the extension (and the build script: its signatures)
KERNEL_SOURCES = (
    "_jit.py",
    "aot_build.py",
    "conntable.py",
    "fastpath.py",
    "h1screen.py",
    "lines.py",
    "tracker.py",
)
STAMP = "_pcapaot.stamp"


def source_hash() -> str:
    h = hashlib.sha256()
    for name in KERNEL_SOURCES:
        h.update(name.encode())
        h.update((HERE / name).read_bytes())
    return h.hexdigest()


def load(expected: str | None = None) -> ModuleType | None:
    """The built extension when it matches ``expected`` (default: the sources as they are now)."""
    if os.environ.get("TCPDOCTOR_JIT"):
        return None
    try:
        stamp = (HERE / STAMP).read_text(encoding="ascii").strip()
    except OSError:
        return None
    if stamp != (expected if expected is not None else source_hash()):
        return None
    try:
        from tcpdoctor.sources.pcap import _pcapaot  # type: ignore[attr-defined]
    except Exception:  # not built, or built against another numpy/Python ABI: the JIT serves
        return None
    module: ModuleType = _pcapaot
    return module


aot = load()

if aot is None:
    import numba  # (the package's __init__ chose a writable NUMBA_CACHE_DIR before this)

    def njit(*args: Any, **kwargs: Any) -> Any:
        return numba.njit(*args, **kwargs)

else:

    def njit(*args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]

        def keep(func: Callable[..., Any]) -> Callable[..., Any]:
            return func

        return keep
