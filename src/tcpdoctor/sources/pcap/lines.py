"""The JSON fast lane: many clean connections written as JSON text by one compiled loop.

:func:`format_lines` writes the ``connections`` objects of ``tcpdoctor pcap --format json`` for
a chunk of rows into one buffer, joined by ``",\\n    "`` exactly as
:func:`tcpdoctor.report.json_report.write` joins streamed items, so that a whole chunk goes out
as one ``RawJSON`` item. The keys, their order and the values are those of
:meth:`tcpdoctor.evidence.pcap.Connection.to_dict` for a connection without a RST, with one
difference in form: ``start`` and ``duration`` are printed in plain decimal rounded to the
microsecond (``json.loads`` of the text gives ``round(x, 6)``; see docs/pcap.md).

Addresses: IPv4 is stored v4-mapped (``hi == 0`` and ``lo >> 32 == 0xFFFF``) and printed
dotted; any other address is printed as ``str(ipaddress.IPv6Address(...))`` (RFC 5952: lower
case, no leading zeros, the longest run of two or more zero groups — the first on a tie —
as ``::``) inside ``[...]:port``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from tcpdoctor.sources.pcap._jit import aot, njit

# --- columns of the int64 matrix ``M`` that format_lines reads ------------------------------
L_ID = 0  # the 1-based connection id
L_CA_HI = 1
L_CA_LO = 2
L_CPORT = 3
L_SA_HI = 4
L_SA_LO = 5
L_SPORT = 6
L_STATE = 7  # index into the state names
L_HISTLEN = 8
L_CPK = 9
L_CBY = 10
L_SPK = 11
L_SBY = 12
L_RETX = 13
L_FF = 14
L_LF = 15
L_COLS = 16
# --- columns of the float64 matrix ``F`` ----------------------------------------------------
F_START = 0
F_END = 1
F_COLS = 2

MAX_ABS_TIME = 9.0e12
"""Timestamps (seconds) the compiled decimal printer takes; :func:`formattable` says which rows."""

SEPARATOR = b",\n    "  # as json_report.write joins the items of a streamed section

_PIECES_TEXT = (
    b'{"id": ',
    b', "client": "',
    b'", "server": "',
    b'", "state": "',
    b'", "history": "',
    b'", "start": ',
    b', "duration": ',
    b', "client_packets": ',
    b', "client_bytes": ',
    b', "server_packets": ',
    b', "server_bytes": ',
    b', "retransmissions": ',
    b', "reset_by": null, "reset_frame": null, "first_frame": ',
    b', "last_frame": ',
    b"}",
    SEPARATOR,
)
_PIECES = np.frombuffer(b"".join(_PIECES_TEXT), np.uint8).copy()
_PIECE_AT = np.cumsum([0, *(len(p) for p in _PIECES_TEXT)]).astype(np.int64)
_HEX = np.frombuffer(b"0123456789abcdef", np.uint8).copy()
_ROW_BYTES = 1024  # an upper bound of one object's length (the longest is ~700 bytes)


@njit(cache=True, inline="always")
def _piece(buf: Any, pos: int, k: int) -> int:
    a = _PIECE_AT[k]
    b = _PIECE_AT[k + 1]
    for j in range(a, b):
        buf[pos] = _PIECES[j]
        pos += 1
    return pos


@njit(cache=True)
def _uint(buf: Any, pos: int, v: int) -> int:
    """Decimal digits of a non-negative integer."""
    if v == 0:
        buf[pos] = 48
        return pos + 1
    n = 0
    t = v
    while t > 0:
        t //= 10
        n += 1
    end = pos + n
    p = end - 1
    while v > 0:
        buf[p] = 48 + v % 10
        v //= 10
        p -= 1
    return end


@njit(cache=True)
def _int(buf: Any, pos: int, v: int) -> int:
    if v < 0:
        buf[pos] = 45  # "-"
        pos += 1
        if v == -9223372036854775808:  # -v overflows
            pos = _uint(buf, pos, 922337203685477580)
            buf[pos] = 56
            return pos + 1
        v = -v
    return _uint(buf, pos, v)


@njit(cache=True)
def _micros(x: float) -> tuple[bool, Any]:
    """(negative, round(|x| * 1e6)) rounded half to even on the exact value of x, as Python's
    round(x, 6) does. x * 1e6 is computed exactly as a double-double (Dekker's product with
    Veltkamp's split); valid for |x| < MAX_ABS_TIME."""
    neg = x < 0.0
    a = -x if neg else x
    if a < 1e-7:  # a * 1e6 < 0.1: rounds to 0 (and the exact product would underflow)
        return neg, 0
    b = 1e6
    p = a * b
    c = 134217729.0 * a  # 2**27 + 1
    ah = c - (c - a)
    al = a - ah
    bh = 1e6  # 1e6 has 20 significant bits: its split is exact
    bl = 0.0
    err = ((ah * bh - p) + ah * bl + al * bh) + al * bl  # a * b == p + err exactly
    if p < 4503599627370496.0:  # 2**52: p may have a fraction
        f = np.floor(p)
        frac = p - f  # exact
        n = np.int64(f)
        # frac is on p's grid and |err| is at most half its step: err only decides a tie
        if frac > 0.5 or (frac == 0.5 and (err > 0.0 or (err == 0.0 and n % 2 == 1))):
            n += 1
        return neg, n
    # p is an integer; err may be beyond +-0.5
    g = np.floor(err)
    fr = err - g
    n = np.int64(p) + np.int64(g)
    if fr > 0.5 or (fr == 0.5 and n % 2 == 1):
        n += 1
    return neg, n


@njit(cache=True)
def _decimal(buf: Any, pos: int, x: float) -> int:
    """x rounded to 6 decimals, plain decimal, trailing zeros stripped, at least one fractional digit."""
    neg, n = _micros(x)
    if neg:
        buf[pos] = 45
        pos += 1
    pos = _uint(buf, pos, n // 1000000)
    buf[pos] = 46  # "."
    pos += 1
    frac = n % 1000000
    if frac == 0:
        buf[pos] = 48
        return pos + 1
    digits = 6
    while frac % 10 == 0:
        frac //= 10
        digits -= 1
    end = pos + digits
    p = end - 1
    for _ in range(digits):
        buf[p] = 48 + frac % 10
        frac //= 10
        p -= 1
    return end


@njit(cache=True)
def _hextet(buf: Any, pos: int, g: int) -> int:
    started = False
    for shift in (12, 8, 4, 0):
        nib = (g >> shift) & 15
        if nib != 0 or started or shift == 0:
            buf[pos] = _HEX[nib]
            pos += 1
            started = True
    return pos


@njit(cache=True)
def _endpoint(buf: Any, pos: int, hi: int, lo: int, port: int) -> int:
    if hi == 0 and ((lo >> 32) & 0xFFFFFFFF) == 0xFFFF:
        v = lo & 0xFFFFFFFF
        for shift in (24, 16, 8):
            pos = _uint(buf, pos, (v >> shift) & 255)
            buf[pos] = 46
            pos += 1
        pos = _uint(buf, pos, v & 255)
    else:
        groups = np.empty(8, np.int64)
        for j in range(4):
            groups[j] = (hi >> (48 - 16 * j)) & 0xFFFF
            groups[4 + j] = (lo >> (48 - 16 * j)) & 0xFFFF
        # the longest run of zero groups (the first one on a tie), compressed when 2 or more
        best_start = -1
        best_len = 0
        run_start = -1
        run_len = 0
        for j in range(8):
            if groups[j] == 0:
                if run_start < 0:
                    run_start = j
                run_len += 1
                if run_len > best_len:
                    best_len = run_len
                    best_start = run_start
            else:
                run_start = -1
                run_len = 0
        buf[pos] = 91  # "["
        pos += 1
        if best_len < 2:
            best_start = 8
            best_len = 0
        for j in range(best_start):
            if j > 0:
                buf[pos] = 58
                pos += 1
            pos = _hextet(buf, pos, groups[j])
        if best_len > 0:
            buf[pos] = 58
            buf[pos + 1] = 58
            pos += 2
            for j in range(best_start + best_len, 8):
                if j > best_start + best_len:
                    buf[pos] = 58
                    pos += 1
                pos = _hextet(buf, pos, groups[j])
        buf[pos] = 93  # "]"
        pos += 1
    buf[pos] = 58  # ":"
    pos += 1
    return _uint(buf, pos, port)


@njit(cache=True)
def format_rows(M: Any, F: Any, H: Any, names: Any, name_len: Any) -> Any:
    n = M.shape[0]
    buf = np.empty(n * _ROW_BYTES + 16, np.uint8)
    pos = 0
    for i in range(n):
        if i > 0:
            pos = _piece(buf, pos, 15)
        pos = _piece(buf, pos, 0)
        pos = _int(buf, pos, M[i, L_ID])
        pos = _piece(buf, pos, 1)
        pos = _endpoint(buf, pos, M[i, L_CA_HI], M[i, L_CA_LO], M[i, L_CPORT])
        pos = _piece(buf, pos, 2)
        pos = _endpoint(buf, pos, M[i, L_SA_HI], M[i, L_SA_LO], M[i, L_SPORT])
        pos = _piece(buf, pos, 3)
        s = M[i, L_STATE]
        for j in range(name_len[s]):
            buf[pos] = names[s, j]
            pos += 1
        pos = _piece(buf, pos, 4)
        for j in range(min(M[i, L_HISTLEN], H.shape[1])):
            buf[pos] = H[i, j]
            pos += 1
        pos = _piece(buf, pos, 5)
        start = F[i, F_START]
        pos = _decimal(buf, pos, start)
        pos = _piece(buf, pos, 6)
        pos = _decimal(buf, pos, F[i, F_END] - start)
        pos = _piece(buf, pos, 7)
        pos = _int(buf, pos, M[i, L_CPK])
        pos = _piece(buf, pos, 8)
        pos = _int(buf, pos, M[i, L_CBY])
        pos = _piece(buf, pos, 9)
        pos = _int(buf, pos, M[i, L_SPK])
        pos = _piece(buf, pos, 10)
        pos = _int(buf, pos, M[i, L_SBY])
        pos = _piece(buf, pos, 11)
        pos = _int(buf, pos, M[i, L_RETX])
        pos = _piece(buf, pos, 12)
        pos = _int(buf, pos, M[i, L_FF])
        pos = _piece(buf, pos, 13)
        pos = _int(buf, pos, M[i, L_LF])
        pos = _piece(buf, pos, 14)
    return buf[:pos]


def state_table(names: tuple[str, ...]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """The state names as a uint8 matrix (one per row) and their lengths, for :func:`format_lines`."""
    width = max(len(s) for s in names)
    table = np.zeros((len(names), width), np.uint8)
    for k, s in enumerate(names):
        table[k, : len(s)] = np.frombuffer(s.encode("ascii"), np.uint8)
    return table, np.array([len(s) for s in names], np.int64)


def formattable(start: npt.NDArray[np.float64], end: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """Rows whose start and duration the compiled printer takes (finite, |x| < MAX_ABS_TIME)."""
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, not formattable
        dur = end - start
        ok: npt.NDArray[np.bool_] = (np.abs(start) < MAX_ABS_TIME) & (np.abs(dur) < MAX_ABS_TIME)
    return ok


def format_lines(
    M: npt.NDArray[np.int64],
    F: npt.NDArray[np.float64],
    H: npt.NDArray[np.uint8],
    names: tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]],
) -> str:
    """The JSON objects of the rows of ``M`` (columns ``L_*``), ``F`` (``F_START``, ``F_END``) and
    ``H`` (history letters, ``M[:, L_HISTLEN]`` of each row), joined by :data:`SEPARATOR`.

    ``names`` is :func:`state_table` of the state names ``M[:, L_STATE]`` indexes. Every row must
    be :func:`formattable`.
    """
    if not len(M):
        return ""
    out = format_rows(
        np.ascontiguousarray(M, np.int64),
        np.ascontiguousarray(F, np.float64),
        np.ascontiguousarray(H, np.uint8),
        names[0],
        names[1],
    )
    text: str = out.tobytes().decode("ascii")
    return text


if aot is not None:  # the kernels compiled ahead of time (_jit.py)
    format_rows = aot.format_rows
