"""Build ``_pcapaot``, the capture kernels compiled ahead of time (see :mod:`._jit`).

    python -m tcpdoctor.sources.pcap.aot_build     # run by `make install`; ~1 min, needs a C compiler

Each exported kernel gets the one signature the Python side calls it with (C-contiguous
arrays, int64 scalars, booleans); the build writes the extension into this package and, last,
the stamp that makes :mod:`._jit` use it.
"""

from __future__ import annotations

import os
import sys
import time
import warnings

os.environ["TCPDOCTOR_JIT"] = "1"  # the kernels must be numba functions to be compiled here

# numba's pycc is deprecated in favour of a successor that is not released yet; it still works
warnings.filterwarnings("ignore", module="numba")

U8 = "uint8[::1]"
I8 = "int64[::1]"
F8 = "float64[::1]"
I8A = "int64[:]"  # 1-D int64 of any layout (a column of a matrix)
M8 = "int64[:, ::1]"
MF = "float64[:, ::1]"
MU8 = "uint8[:, ::1]"

SIGNATURES: dict[str, tuple[str, str]] = {
    # name: (module, signature)
    "frame_pcap": (
        "fastpath",
        f"Tuple(({I8A}, {I8A}, {I8A}, float64[:], int64, int64))({U8}, boolean, int64, int64, int64)",
    ),
    "pcap_resync": ("fastpath", f"int64({U8}, int64, boolean, int64, int64)"),
    "frame_pcapng": (
        "fastpath",
        f"Tuple(({I8A}, {I8A}, {I8A}, float64[:], {I8A}, int64, int64))"
        f"({U8}, int64, boolean, {I8}, {I8}, {I8}, int64, int64)",
    ),
    "pcapng_resync": ("fastpath", f"int64({U8}, int64, boolean, int64)"),
    "decode": ("fastpath", f"Tuple(({M8}, int64))({U8}, {I8}, {I8}, {I8})"),
    "track": (
        "tracker",
        f"Tuple(({M8}, {M8}, {F8}, int64, int64, int64))"
        f"({M8}, {F8}, int64, {M8}, {MF}, {MU8}, {M8}, {I8}, {I8}, {I8}, {I8}, {I8})",
    ),
    "sweep": ("tracker", f"{I8A}({M8}, {MF}, {I8}, {I8}, float64, float64, float64, boolean)"),
    "release": ("tracker", f"void({I8}, {I8}, {I8A})"),
    "screen": (
        "h1screen",
        f"void({M8}, {M8}, {U8}, {F8}, int64, int64, {M8}, int64[:, :, ::1], {MF}, int64, int64, int64, int64, int64, int64)",
    ),
    "verdicts": ("h1screen", f"{I8}({M8}, {I8A}, {I8A})"),
    "find": ("conntable", f"UniTuple(int64, 2)({M8}, {I8}, {I8})"),
    "put": ("conntable", f"void({M8}, {I8}, {I8}, int64, {I8}, int64)"),
    "remove": ("conntable", f"void({I8}, {I8}, int64)"),
    "rebuild": ("conntable", f"void({M8}, {I8}, {M8}, {I8})"),
    "format_rows": ("lines", f"uint8[:]({M8}, {MF}, {MU8}, {MU8}, {I8})"),
}


def build(output_dir: str | None = None) -> str:
    from importlib import import_module

    from numba.pycc import CC

    from tcpdoctor.sources.pcap import _jit

    out = output_dir or str(_jit.HERE)
    stamp = os.path.join(out, _jit.STAMP)
    if os.path.exists(stamp):
        os.unlink(stamp)  # never a stamp beside a half-built module
    cc = CC("_pcapaot")
    cc.output_dir = out
    cc.verbose = False
    for name, (module, signature) in SIGNATURES.items():
        func = getattr(import_module(f"tcpdoctor.sources.pcap.{module}"), name)
        cc.export(name, signature)(func.py_func)
    cc.compile()
    with open(stamp, "w", encoding="ascii") as fh:
        fh.write(_jit.source_hash() + "\n")
    return out


def up_to_date() -> bool:
    from tcpdoctor.sources.pcap import _jit

    os.environ.pop("TCPDOCTOR_JIT", None)
    try:
        return _jit.load() is not None
    finally:
        os.environ["TCPDOCTOR_JIT"] = "1"


def main() -> None:
    if len(sys.argv) == 1 and up_to_date():
        print("tcpdoctor: capture kernels compiled ahead of time: up to date")
        return
    started = time.perf_counter()
    out = build(sys.argv[1] if len(sys.argv) > 1 else None)
    print(
        f"tcpdoctor: capture kernels compiled ahead of time into {out} ({time.perf_counter() - started:.0f} s)"
    )


if __name__ == "__main__":
    main()
