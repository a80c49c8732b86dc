"""The compiled HTTP/1.1 screen: clean keep-nothing connections never reach the Python app layer.

Most connections of a busy capture are ordinary HTTP/1.1 exchanges whose app-layer result
the report drops (:meth:`tcpdoctor.sources.pcap.app.AppAnalyzer.quiet`): every request
answered, no probe, nothing malformed. Parsing their heads in Python cost ~33 us per
connection. This screen follows the message framing of such connections in compiled code
instead, and proves them quiet without building any object.

It is a *conservative* screen, not a second parser: it understands only the plain case
(whole heads inside one segment, CRLF line ends, ``Content-Length`` or no body, or a
response delimited by the server's close; in-order segments; no ``Transfer-Encoding``,
1xx/101, ``CONNECT``, ``kube-probe/`` user agent, pipelining deeper than 60) and hands a
connection to the Python parser (:mod:`tcpdoctor.sources.pcap.http1`, the single source of
HTTP truth) as soon as anything else appears. To make that hand-over exact, it records
every delivery the Python side would have acted on (at most :data:`MAX_RECORDS` per
connection: file offset and length of the payload, relative sequence number, direction,
FIN, frame, time) and the tracker replays them from the capture file into a fresh
:class:`~tcpdoctor.sources.pcap.app.AppAnalyzer` — at the hand-over, or when the connection
finishes and its result is needed after all (not clean, reset, or not quiet). Replay
reads the file again (``os.pread``), so the screen is only used on regular files.

Recorded deliveries are those Python would not ignore: new in-order data beyond what the
analyzer asked to skip (bodies of :data:`~tcpdoctor.sources.pcap.app.SKIP_AT_LEAST`
bytes or more), and each side's first FIN. Retransmitted bytes, RSTs (``closed`` ignores
them) and later FINs are no-ops there and are not recorded.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tcpdoctor.sources.pcap._jit import aot, njit
from tcpdoctor.sources.pcap.fastpath import FIN, H_FLAGS, H_PCAP, H_POFF, H_SEGLEN

MAX_RECORDS = 12  # deliveries kept per connection; one more hands it to Python
MAX_HEAD = 16 * 1024
MAX_PENDING = 60  # requests awaiting a response (a bit each in a 64-bit FIFO)
SKIP_AT_LEAST = 4096  # as app.SKIP_AT_LEAST: the analyzer's body skip, mirrored (a test pins it)

# per-connection state columns of A (one row per tracker slot)
A_CID = 0  # connection id + 1 owning the row: a new connection in the slot resets it
A_MODE = 1
A_PEND = 2  # requests sent whose response is not complete
A_PQ = 3  # FIFO bitmask: bit i = the i-th pending request is a HEAD request
A_NREC = 4
A_FINS = 5  # bit d: direction d sent its FIN
A_D0 = 6
AD_NEXT_SET = 0
AD_NEXT = 1  # next relative sequence number in order
AD_SKIP = 2  # the analyzer's skip_until (relative seq), as Python would have set it
AD_BODY = 3
AD_REM = 4  # Content-Length bytes left
AD_BYTES = 5  # payload bytes taken in order (the max_app_bytes bound, conservatively)
AD = 6
A_COLS = A_D0 + 2 * AD

MODE_NEW = 0  # no payload yet
MODE_SCREEN = 1  # followed here
MODE_PYTHON = 2  # handed to (or always with) the Python app layer

BODY_HEAD = 0  # reading a head
BODY_LENGTH = 1
BODY_CLOSE = 2  # a response delimited by the server's FIN

# recorded deliveries R[slot, k, :]
R_OFF = 0  # byte offset of the payload in the capture file
R_PCAP = 1
R_SEGLEN = 2
R_REL = 3
R_DIR = 4
R_FLAGS = 5
R_FRAME = 6
R_COLS = 7

# what screen() leaves in the tracker's per-packet P_DELIVER column
DELIVER_NONE = 0  # handled here
DELIVER_PYTHON = 1  # as the tracker set it: the Python app layer takes the packet
DELIVER_REPLAY = 2  # hand-over: replay the recorded deliveries, then deliver this packet

_CL = np.frombuffer(b"content-length", np.uint8)
_TE = np.frombuffer(b"transfer-encoding", np.uint8)
_PROBE = np.frombuffer(b"kube-probe/", np.uint8)


@njit(cache=True, inline="always")
def _ws(c: Any) -> bool:
    # bytes.strip() whitespace (and what \s / \S mean in a bytes regex)
    return c == 32 or c == 9 or c == 10 or c == 13 or c == 11 or c == 12


@njit(cache=True)
def _starts_method(a: Any, p: int, n: int) -> bool:
    """The first client bytes are a method the screen follows and a space (CONNECT, PRI: no)."""
    k = 0
    while k < n and k < 8 and 65 <= a[p + k] <= 90:
        k += 1
    if k == 0 or k >= n or a[p + k] != 32:
        return False
    w = a[p : p + k]
    if k == 3:
        return (w[0] == 71 and w[1] == 69 and w[2] == 84) or (w[0] == 80 and w[1] == 85 and w[2] == 84)
    if k == 4:
        return (w[0] == 80 and w[1] == 79 and w[2] == 83 and w[3] == 84) or (
            w[0] == 72 and w[1] == 69 and w[2] == 65 and w[3] == 68
        )
    if k == 5:  # PATCH TRACE
        return (w[0] == 80 and w[1] == 65 and w[2] == 84 and w[3] == 67 and w[4] == 72) or (
            w[0] == 84 and w[1] == 82 and w[2] == 65 and w[3] == 67 and w[4] == 69
        )
    if k == 6:  # DELETE
        return w[0] == 68 and w[1] == 69 and w[2] == 76 and w[3] == 69 and w[4] == 84 and w[5] == 69
    if k == 7:  # OPTIONS
        return w[0] == 79 and w[1] == 80 and w[2] == 84 and w[3] == 73 and w[4] == 79 and w[5] == 78
    return False


@njit(cache=True)
def _head_end(a: Any, lo: int, hi: int) -> int:
    """Index of the first CRLFCRLF in a[lo:hi], or -1."""
    i = lo
    while i + 3 < hi:
        if a[i] == 13 and a[i + 1] == 10 and a[i + 2] == 13 and a[i + 3] == 10:
            return i
        i += 1
    return -1


@njit(cache=True)
def _name_is(a: Any, lo: int, hi: int, name: Any) -> bool:
    """a[lo:hi] (already stripped) equals ``name`` ignoring ASCII case."""
    if hi - lo != len(name):
        return False
    for k in range(hi - lo):
        c = a[lo + k]
        if 65 <= c <= 90:
            c += 32
        if c != name[k]:
            return False
    return True


@njit(cache=True)
def _contains(a: Any, lo: int, hi: int, needle: Any) -> bool:
    m = len(needle)
    for i in range(lo, hi - m + 1):
        if a[i] == needle[0]:
            ok = True
            for k in range(1, m):
                if a[i + k] != needle[k]:
                    ok = False
                    break
            if ok:
                return True
    return False


@njit(cache=True)
def _headers(a: Any, lo: int, hi: int) -> Any:
    """Walk the header lines of a[lo:hi] (CRLF-separated, start line excluded).

    Returns (ok, content_length): -1 when absent; ok False on a Transfer-Encoding, a repeated or
    non-decimal Content-Length, or a bare CR/LF anywhere (the Python parser then decides).
    """
    cl = np.int64(-1)
    s = lo
    while s < hi:
        e = s
        while e < hi and not (a[e] == 13 and e + 1 < hi and a[e + 1] == 10):
            if a[e] == 10 or a[e] == 13:
                return False, cl  # a bare LF or CR
            e += 1
        c = s
        while c < e and a[c] != 58:
            c += 1
        if c < e:
            ns, ne = s, c
            while ns < ne and _ws(a[ns]):
                ns += 1
            while ne > ns and _ws(a[ne - 1]):
                ne -= 1
            if _name_is(a, ns, ne, _TE):
                return False, cl
            if _name_is(a, ns, ne, _CL):
                if cl >= 0:
                    return False, cl
                vs, ve = c + 1, e
                while vs < ve and (a[vs] == 32 or a[vs] == 9):
                    vs += 1
                while ve > vs and (a[ve - 1] == 32 or a[ve - 1] == 9):
                    ve -= 1
                if ve == vs or ve - vs > 15:
                    return False, cl
                v = np.int64(0)
                for k in range(vs, ve):
                    if not 48 <= a[k] <= 57:
                        return False, cl
                    v = v * 10 + (a[k] - 48)
                cl = v
        s = e + 2
    return True, cl


@njit(cache=True)
def _line_end(a: Any, lo: int, hi: int) -> int:
    e = lo
    while e < hi and not (a[e] == 13 and e + 1 < hi and a[e + 1] == 10):
        e += 1
    return e


@njit(cache=True)
def _is_version(a: Any, i: int) -> bool:
    """a[i:i+8] is ``HTTP/d.d``."""
    return (
        a[i] == 72
        and a[i + 1] == 84
        and a[i + 2] == 84
        and a[i + 3] == 80
        and a[i + 4] == 47
        and 48 <= a[i + 5] <= 57
        and a[i + 6] == 46
        and 48 <= a[i + 7] <= 57
    )


@njit(cache=True)
def _request(a: Any, lo: int, hi: int) -> Any:
    """(ok, is_head, content_length) of the request head a[lo:hi] (without its final CRLFCRLF)."""
    e = _line_end(a, lo, hi)
    i = lo
    while i < e and 65 <= a[i] <= 90:
        i += 1
    if i == lo or i >= e or a[i] != 32:
        return False, False, np.int64(-1)
    k = i - lo
    is_head = k == 4 and a[lo] == 72 and a[lo + 1] == 69 and a[lo + 2] == 65 and a[lo + 3] == 68
    if k == 7 and a[lo] == 67 and a[lo + 1] == 79:  # CONNECT: a tunnel, Python's business
        return False, False, np.int64(-1)
    i += 1
    t = i
    while i < e and not _ws(a[i]):
        i += 1
    if i == t or i >= e or a[i] != 32 or e - (i + 1) != 8 or not _is_version(a, i + 1):
        return False, False, np.int64(-1)
    if _contains(a, lo, hi, _PROBE):
        return False, False, np.int64(-1)  # a kubelet probe: the ledger wants it
    ok, cl = _headers(a, e + 2 if e < hi else hi, hi)
    return ok, is_head, cl


@njit(cache=True)
def _response(a: Any, lo: int, hi: int) -> Any:
    """(ok, status, content_length) of the response head a[lo:hi]."""
    e = _line_end(a, lo, hi)
    if e - lo < 12 or not _is_version(a, lo) or a[lo + 8] != 32:
        return False, np.int64(0), np.int64(-1)
    for k in range(lo + 12, e):
        if a[k] == 10 or a[k] == 13:
            return False, np.int64(0), np.int64(-1)  # a bare CR or LF in the reason phrase
    status = np.int64(0)
    for k in range(lo + 9, lo + 12):
        if not 48 <= a[k] <= 57:
            return False, status, np.int64(-1)
        status = status * 10 + (a[k] - 48)
    if e > lo + 12 and a[lo + 12] != 32:
        return False, status, np.int64(-1)
    ok, cl = _headers(a, e + 2 if e < hi else hi, hi)
    return ok, status, cl


@njit(cache=True, inline="always")
def _pop(A: Any, slot: int) -> None:
    A[slot, A_PEND] -= 1
    A[slot, A_PQ] >>= 1


@njit(cache=True)
def _feed(A: Any, slot: int, d: int, a: Any, lo: int, hi: int) -> bool:
    """One direction's in-order bytes a[lo:hi] through the framing. False: hand over."""
    b = A_D0 + d * AD
    pos = lo
    while pos < hi:
        body = A[slot, b + AD_BODY]
        if body == BODY_LENGTH:
            take = min(A[slot, b + AD_REM], hi - pos)
            A[slot, b + AD_REM] -= take
            pos += take
            if A[slot, b + AD_REM] == 0:
                A[slot, b + AD_BODY] = BODY_HEAD
                if d == 1:
                    _pop(A, slot)
            continue
        if body == BODY_CLOSE:
            return True  # everything until the server's FIN is body
        while pos < hi and (a[pos] == 13 or a[pos] == 10):
            pos += 1  # stray CRLF between messages (RFC 9112 §2.2), as the parser skips it
        if pos >= hi:
            break
        end = _head_end(a, pos, hi)
        if end < 0 or end - pos > MAX_HEAD:
            return False  # a head split across segments (or huge)
        if d == 0:
            ok, is_head, cl = _request(a, pos, end)
            if not ok or A[slot, A_PEND] >= MAX_PENDING:
                return False
            if is_head:
                A[slot, A_PQ] |= np.int64(1) << A[slot, A_PEND]
            A[slot, A_PEND] += 1
            if cl > 0:
                A[slot, b + AD_BODY] = BODY_LENGTH
                A[slot, b + AD_REM] = cl
        else:
            ok, status, cl = _response(a, pos, end)
            if not ok or A[slot, A_PEND] == 0 or 100 <= status < 200:
                return False  # malformed, unsolicited, interim or upgrade
            if (A[slot, A_PQ] & 1) == 1 or status == 204 or status == 304 or cl == 0:
                _pop(A, slot)
            elif cl < 0:
                A[slot, b + AD_BODY] = BODY_CLOSE
            else:
                A[slot, b + AD_BODY] = BODY_LENGTH
                A[slot, b + AD_REM] = cl
        pos = end + 4
    return True


@njit(cache=True)
def screen(
    P: Any,
    H: Any,
    a: Any,
    ts: Any,
    first_frame: int,
    file_offset: int,
    A: Any,
    R: Any,
    RT: Any,
    max_bytes: int,
    p_conn: int,
    p_slot: int,
    p_dir: int,
    p_rel: int,
    p_deliver: int,
) -> None:
    """Take the app-layer deliveries of screened connections out of P[:, p_deliver]: 0 where
    the screen handled the packet, DELIVER_REPLAY where it hands the connection over."""
    for i in range(len(P)):
        if P[i, p_deliver] == 0:
            continue
        slot = P[i, p_slot]
        if A[slot, A_CID] != P[i, p_conn]:
            A[slot, :] = 0
            A[slot, A_CID] = P[i, p_conn]
        mode = A[slot, A_MODE]
        if mode >= MODE_PYTHON:
            continue
        h = H[i]
        d = P[i, p_dir]
        rel = P[i, p_rel]
        seglen = h[H_SEGLEN]
        pcap = h[H_PCAP]
        poff = h[H_POFF]
        fin = (h[H_FLAGS] & FIN) != 0
        if mode == MODE_NEW:
            if seglen == 0:
                P[i, p_deliver] = DELIVER_NONE  # a FIN or RST before any payload: nothing to open
                continue
            if d == 1 or pcap != seglen or not _starts_method(a, poff, pcap):
                # the server speaks first (the factory declines), TLS, HTTP/2, CONNECT, other:
                # the Python side opens (or declines) it as it would without the screen
                A[slot, A_MODE] = MODE_PYTHON
                continue
            A[slot, A_MODE] = MODE_SCREEN
        b = A_D0 + d * AD
        ok = True
        record = False
        if seglen > 0:
            if (A[slot, A_FINS] >> d) & 1:
                ok = False  # data after this side's FIN
            else:
                if A[slot, b + AD_NEXT_SET] == 0:
                    A[slot, b + AD_NEXT_SET] = 1
                    A[slot, b + AD_NEXT] = rel
                nxt = A[slot, b + AD_NEXT]
                end = rel + seglen
                if end > nxt:  # (else: retransmitted bytes, ignored by the analyzer too)
                    A[slot, b + AD_BYTES] += seglen
                    if rel != nxt or rel < 0 or pcap != seglen or A[slot, b + AD_BYTES] > max_bytes:
                        # a gap, an overlap, bytes before the stream's base (the analyzer's cursor
                        # starts at 0), a cut segment, or the byte bound
                        ok = False
                    elif not _feed(A, slot, d, a, poff, poff + pcap):
                        ok = False
                    else:
                        record = end > A[slot, b + AD_SKIP]
                        A[slot, b + AD_NEXT] = end
                        rem = A[slot, b + AD_REM]
                        if A[slot, b + AD_BODY] == BODY_LENGTH and rem - 1 >= SKIP_AT_LEAST and record:
                            A[slot, b + AD_SKIP] = end + rem - 1  # what AppAnalyzer.data asks to skip
        if ok and fin and not (A[slot, A_FINS] >> d) & 1:
            A[slot, A_FINS] |= 1 << d
            record = True
            if d == 1 and A[slot, b + AD_BODY] == BODY_CLOSE:
                A[slot, b + AD_BODY] = BODY_HEAD
                _pop(A, slot)
        if ok and record:
            k = A[slot, A_NREC]
            if k >= MAX_RECORDS:
                ok = False
            else:
                R[slot, k, R_OFF] = file_offset + poff
                R[slot, k, R_PCAP] = pcap
                R[slot, k, R_SEGLEN] = seglen
                R[slot, k, R_REL] = rel
                R[slot, k, R_DIR] = d
                R[slot, k, R_FLAGS] = h[H_FLAGS]
                R[slot, k, R_FRAME] = first_frame + i
                RT[slot, k] = ts[i]
                A[slot, A_NREC] = k + 1
        if ok:
            P[i, p_deliver] = DELIVER_NONE
        else:
            A[slot, A_MODE] = MODE_PYTHON
            P[i, p_deliver] = DELIVER_REPLAY


@njit(cache=True)
def verdicts(A: Any, slots: Any, cids: Any) -> Any:
    """Per finished slot: -1 not screened, 1 screened and quiet (nothing pending), 0 screened, not quiet."""
    out = np.full(len(slots), -1, np.int64)
    for j in range(len(slots)):
        s = slots[j]
        if A[s, A_CID] != cids[j] + 1 or A[s, A_MODE] != MODE_SCREEN:
            continue
        quiet = (
            A[s, A_PEND] == 0 and A[s, A_D0 + AD_BODY] == BODY_HEAD and A[s, A_D0 + AD + AD_BODY] == BODY_HEAD
        )
        out[j] = 1 if quiet else 0
    return out


if aot is not None:  # the kernels compiled ahead of time (_jit.py)
    screen = aot.screen
    verdicts = aot.verdicts
