"""TCP connection tracking: a compiled state machine over decoded batches, finished connections out.

Connections are keyed by the 4-tuple (both directions map to one key) and the SYN instance:
a SYN without ACK whose sequence number differs from the ISN its sender already used, or a
SYN on a 4-tuple whose connection already saw FIN or RST, finishes the old connection
(``finished_by="reuse"``) and starts a new one with a ``reused_ports`` event.

State lives in two numpy matrices (int64 ``S`` and float64 ``T``, one row per live
connection, columns ``C_*`` and, per direction, ``D_*`` at ``D0 + dir * ND``) and a numba
typed dict from key to row. Connections are finished and their rows recycled when closed
(both FINs, or a RST) and quiet for ``linger`` seconds of capture time, when idle for
``idle_timeout`` seconds, on port reuse, or at the end of the capture: memory is bounded
by the live connections, not by the packets.

The analysis flags follow Wireshark's ``tcp.analysis.*`` (docs/pcap.md lists each
definition and the differences).
"""

from __future__ import annotations

import gc
import ipaddress
import itertools
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tcpdoctor.evidence.pcap import (
    CONN_STATES,
    CONTINUE,
    MAX_EVENTS_PER_KIND,
    STOP,
    AnalyzerFactory,
    CaptureStats,
    Connection,
    ConnectionObserver,
    Direction,
    DirectionStats,
    Endpoint,
    PcapEvidence,
    StreamAnalyzer,
    TcpEvent,
)
from tcpdoctor.model import InputError
from tcpdoctor.sources.pcap import conntable, h1screen, lines
from tcpdoctor.sources.pcap._jit import aot, njit
from tcpdoctor.sources.pcap.conn_state import Sent, conn_state
from tcpdoctor.sources.pcap.fastpath import (
    ACK,
    FIN,
    H_ACK,
    H_DA_HI,
    H_DA_LO,
    H_DPORT,
    H_FLAGS,
    H_IPID,
    H_IPLEN,
    H_MSS,
    H_OK,
    H_PCAP,
    H_POFF,
    H_SA_HI,
    H_SA_LO,
    H_SACKP,
    H_SEGLEN,
    H_SEQ,
    H_SPORT,
    H_TSOPT,
    H_TTL,
    H_WIN,
    H_WSCALE,
    RST,
    SYN,
    decode,
)
from tcpdoctor.sources.pcap.reader import SUPPORTED_LINKTYPES, Batch, open_capture

# --- connection columns of S ---------------------------------------------------------------
C_ID = 0
C_CA_HI = 1  # client address (v4-mapped for IPv4)
C_CA_LO = 2
C_SA_HI = 3
C_SA_LO = 4
C_CPORT = 5
C_SPORT = 6
C_K0 = 7  # the connection table's key (5 values)
C_FIRST_FRAME = 12
C_LAST_FRAME = 13
C_RESET_BY = 14  # -1 none, 0 client, 1 server
C_RESET_FRAME = 15
C_RESET_PHASE = 16  # 0 none, 1 handshake, 2 established, 3 closing
C_SYN_FRAME = 17
C_SYNACK_FRAME = 18
C_MAXIDLE_FRAME = 19
C_FINISHED_BY = 20  # 0 eof, 1 fin, 2 rst, 3 idle, 4 reuse
C_APP = 21  # 1 while the app layer wants this connection's payload
C_HISTLEN = 22
C_CLOSED = 23  # 1 after both FINs or a RST
C_FLIPPED = 24  # 1 when the client is not the first packet's sender
C_REUSED = 25  # 1 when this connection reused the 4-tuple of an earlier one
C_HANDSHAKE_DONE = 26
C_COLS = 32

# --- per-direction columns of S (at D0 + d * ND) ---------------------------------------------
D0 = C_COLS
D_BASE_SET = 0
D_BASE = 1  # ISN (SYN's seq) or first seq seen: relative numbers are seq - BASE
D_SYN_SEEN = 2
D_NEXT_SET = 3
D_NEXT = 4  # relative next expected sequence number
D_ACK_SET = 5
D_ACK = 6  # last absolute ack number sent by this direction
D_WIN_SET = 7
D_WIN = 8  # last raw window
D_WSCALE = 9  # offered shift, -1 none
D_MSS = 10
D_SACKP = 11
D_TSOPT = 12
D_PACKETS = 13
D_BYTES = 14
D_IPBYTES = 15
D_RETRANS = 16
D_FASTRETX = 17
D_SPURIOUS = 18
D_OOO = 19
D_DUPACK = 20
D_DUPACKNUM = 21
D_ZEROWIN = 22
D_ZWPROBE = 23
D_WINFULL = 24
D_KEEPALIVE = 25
D_LOST = 26
D_SYNS = 27
D_FINS = 28
D_RSTS = 29
D_TTL = 30
D_RST_TTL = 31
D_RST_IPID = 32
D_LAST_IPID = 33
D_IPID_BEFORE_RST = 34
D_SENT_SYNACK = 35
D_SENT_DATA = 36
D_HIST = 37  # bitmask of history letters already written
D_T_NEXT = 38  # next retransmission count at which T is written again (1, 10, 100, ...)
D_W_NEXT = 39
D_SKIP_UNTIL = 40  # app layer: relative seq before which payload is not delivered
D_APP_DONE = 41
D_ISN = 42
D_LAST_KA = 43  # 1 when this direction's last segment was a keep-alive or zero-window probe
ND = 48
S_COLS = D0 + 2 * ND

# --- float columns of T ----------------------------------------------------------------------
T_START = 0
T_END = 1
T_RESET_TS = 2
T_SYN_TS = 3
T_SYNACK_TS = 4
T_ACK_TS = 5
T_MAXIDLE = 6
T_IDLE_BEFORE_RST = 7
T_D0 = 8  # per direction: FIRST, LAST, LAST_PAYLOAD, NEXT_TIME
TD_FIRST = 0
TD_LAST = 1
TD_LAST_PAYLOAD = 2
TD_NEXT_TIME = 3
TND = 4
T_COLS = T_D0 + 2 * TND

HIST_MAX = 40

# event kind codes (index into EVENT_CODES)
EV_RETRANS = 0
EV_FASTRETX = 1
EV_SPURIOUS = 2
EV_OOO = 3
EV_DUPACK = 4
EV_ZEROWIN = 5
EV_ZWPROBE = 6
EV_WINFULL = 7
EV_KEEPALIVE = 8
EV_REUSED = 9
EV_LOST = 10
EV_RST = 11
EV_SYNRETX = 12
EVENT_CODES = (
    "retransmission",
    "fast_retransmission",
    "spurious_retransmission",
    "out_of_order",
    "dup_ack",
    "zero_window",
    "zero_window_probe",
    "window_full",
    "keep_alive",
    "reused_ports",
    "lost_segment",
    "rst",
    "syn_retransmission",
)
EV_COLS = 7  # conn id, kind, frame, dir, seq, len, (ts in a float array)

# per-packet output columns (int64 matrix P)
P_CONN = 0  # connection id, 0 when not TCP
P_SLOT = 1
P_DIR = 2
P_REL = 3
P_DELIVER = 4  # 1: hand the payload / FIN / RST to the app layer
P_COLS = 5

# global state vector G
G_NEXT_ID = 0
G_FREE_TOP = 1
G_LIVE = 2
G_COLS = 4


OOO_THRESHOLD = 0.003  # seconds, Wireshark's default when the RTT is unknown


@njit(cache=True, inline="always")
def _rel(x: int) -> int:
    x &= 0xFFFFFFFF
    if x >= 0x80000000:
        x -= 0x100000000
    return x


@njit(cache=True)
def _hist(S: Any, Hs: Any, slot: int, d: int, letter: int, bit: int) -> None:
    """Zeek history: a letter once per direction (upper case = client), in order of appearance."""
    b = D0 + d * ND
    if S[slot, b + D_HIST] & bit:
        return
    S[slot, b + D_HIST] |= bit
    n = S[slot, C_HISTLEN]
    if n < HIST_MAX:
        Hs[slot, n] = letter if d == 0 else letter + 32
        S[slot, C_HISTLEN] = n + 1


@njit(cache=True)
def _hist_repeat(S: Any, Hs: Any, slot: int, d: int, letter: int, count: int, col: int) -> None:
    """Zeek's T/W (and C): written again when their count reaches 10, 100, 1000, ..."""
    b = D0 + d * ND
    if count >= S[slot, b + col]:
        S[slot, b + col] = S[slot, b + col] * 10
        n = S[slot, C_HISTLEN]
        if n < HIST_MAX:
            Hs[slot, n] = letter if d == 0 else letter + 32
            S[slot, C_HISTLEN] = n + 1


@njit(cache=True)
def _event(
    E: Any, ET: Any, ne: int, cid: int, kind: int, frame: int, d: int, rel: int, seglen: int, ts: float
) -> int:
    if ne < len(E):
        E[ne, 0] = cid
        E[ne, 1] = kind
        E[ne, 2] = frame
        E[ne, 3] = d
        E[ne, 4] = rel
        E[ne, 5] = seglen
        ET[ne] = ts
        return ne + 1
    return ne


@njit(cache=True)
def _alloc(S: Any, T: Any, Hs: Any, free: Any, G: Any) -> int:
    top = G[G_FREE_TOP]
    if top == 0:
        return -1
    top -= 1
    G[G_FREE_TOP] = top
    slot = free[top]
    S[slot, :] = 0
    T[slot, :] = 0.0
    Hs[slot, :] = 0
    G[G_LIVE] += 1
    return slot


@njit(cache=True)
def _open(
    S: Any, T: Any, Hs: Any, free: Any, G: Any, key: Any, client_is_src: bool, h: Any, frame: int, ts: float
) -> int:
    slot = _alloc(S, T, Hs, free, G)
    if slot < 0:
        return -1
    cid = G[G_NEXT_ID]
    G[G_NEXT_ID] = cid + 1
    S[slot, C_ID] = cid
    if client_is_src:
        S[slot, C_CA_HI] = h[H_SA_HI]
        S[slot, C_CA_LO] = h[H_SA_LO]
        S[slot, C_SA_HI] = h[H_DA_HI]
        S[slot, C_SA_LO] = h[H_DA_LO]
        S[slot, C_CPORT] = h[H_SPORT]
        S[slot, C_SPORT] = h[H_DPORT]
    else:
        S[slot, C_CA_HI] = h[H_DA_HI]
        S[slot, C_CA_LO] = h[H_DA_LO]
        S[slot, C_SA_HI] = h[H_SA_HI]
        S[slot, C_SA_LO] = h[H_SA_LO]
        S[slot, C_CPORT] = h[H_DPORT]
        S[slot, C_SPORT] = h[H_SPORT]
        S[slot, C_FLIPPED] = 1
    for j in range(5):
        S[slot, C_K0 + j] = key[j]
    S[slot, C_FIRST_FRAME] = frame
    S[slot, C_RESET_BY] = -1
    S[slot, C_APP] = 1
    for d in range(2):
        b = D0 + d * ND
        S[slot, b + D_WSCALE] = -1
        S[slot, b + D_MSS] = -1
        S[slot, b + D_TTL] = -1
        S[slot, b + D_RST_TTL] = -1
        S[slot, b + D_RST_IPID] = -1
        S[slot, b + D_LAST_IPID] = -1
        S[slot, b + D_IPID_BEFORE_RST] = -1
        S[slot, b + D_T_NEXT] = 1
        S[slot, b + D_W_NEXT] = 1
        S[slot, b + D_ISN] = -1
    T[slot, T_START] = ts
    T[slot, T_END] = ts
    for j in range(T_RESET_TS, T_IDLE_BEFORE_RST + 1):
        T[slot, j] = np.nan
    if not client_is_src:
        # the first packet came from the server: Zeek's "^" (flipped)
        Hs[slot, 0] = 94
        S[slot, C_HISTLEN] = 1
    return slot


@njit(cache=True)
def track(
    H: Any,
    ts: Any,
    first_frame: int,
    S: Any,
    T: Any,
    Hs: Any,
    K: Any,
    V: Any,
    U: Any,
    free: Any,
    G: Any,
    finished: Any,
) -> Any:
    """Run one decoded batch through the connection table.

    Returns (P, E, ET, n_events, n_finished, overflow): per-packet outputs, events, and how many
    slots were written to ``finished`` (connections ended by port reuse inside the batch; their
    rows stay in S/T until the caller has read them and released the slots).
    """
    n = len(H)
    P = np.zeros((n, P_COLS), np.int64)
    E = np.zeros((2 * n + 16, EV_COLS), np.int64)
    ET = np.zeros(2 * n + 16, np.float64)
    ne = 0
    nf = 0
    overflow = 0
    key = (np.int64(0), np.int64(0), np.int64(0), np.int64(0), np.int64(0))
    for i in range(n):
        h = H[i]
        if h[H_OK] == 0:
            continue
        t = ts[i]
        frame = first_frame + i
        flags = h[H_FLAGS]
        syn = (flags & SYN) != 0
        fin = (flags & FIN) != 0
        rst = (flags & RST) != 0
        ackf = (flags & ACK) != 0
        seglen = h[H_SEGLEN]
        # canonical key: the smaller (addr, port) first
        a_hi = h[H_SA_HI]
        a_lo = h[H_SA_LO]
        b_hi = h[H_DA_HI]
        b_lo = h[H_DA_LO]
        sp = h[H_SPORT]
        dp = h[H_DPORT]
        src_first = a_hi < b_hi or (a_hi == b_hi and (a_lo < b_lo or (a_lo == b_lo and sp <= dp)))
        if src_first:
            key = (a_hi, a_lo, b_hi, b_lo, (sp << 16) | dp)
        else:
            key = (b_hi, b_lo, a_hi, a_lo, (dp << 16) | sp)
        found, at = conntable.find(K, V, key)
        slot: Any = np.int64(-1)
        if found >= 0:
            slot = V[found]
        if slot >= 0:
            src_is_client = S[slot, C_CPORT] == sp and S[slot, C_CA_LO] == a_lo and S[slot, C_CA_HI] == a_hi
            if syn and not ackf:
                d0 = 0 if src_is_client else 1
                b = D0 + d0 * ND
                reuse = False
                if (S[slot, b + D_SYN_SEEN] == 1 and S[slot, b + D_ISN] != h[H_SEQ]) or (
                    S[slot, b + D_SYN_SEEN] == 0
                    and (S[slot, C_CLOSED] == 1 or S[slot, D0 + D_FINS] + S[slot, D0 + ND + D_FINS] > 0)
                ):
                    reuse = True
                if reuse:
                    if nf < len(finished):
                        S[slot, C_FINISHED_BY] = 4
                        finished[nf] = slot
                        nf += 1
                        conntable.remove(V, U, found)  # `at` (== found) now takes the new instance
                        slot = -1
                    else:
                        overflow += 1
        if slot < 0:
            client_is_src = True
            if syn and ackf:
                client_is_src = False
            elif not syn:
                # midstream: the lower (well-known) port is taken as the server's
                client_is_src = sp >= dp
            slot = _open(S, T, Hs, free, G, key, client_is_src, h, frame, t)
            if slot < 0:
                overflow += 1
                continue
            conntable.put(K, V, U, at, key, slot)
            if nf > 0 and syn and not ackf:
                # did the previous instance of this key just finish in this batch?
                for j in range(nf):
                    fs = finished[j]
                    same = True
                    for q in range(5):
                        if S[fs, C_K0 + q] != key[q]:
                            same = False
                    if same and S[fs, C_FINISHED_BY] == 4:
                        S[slot, C_REUSED] = 1
                        ne = _event(E, ET, ne, S[slot, C_ID], EV_REUSED, frame, 0, 0, 0, t)
                        break
            src_is_client = client_is_src
        d = 0 if src_is_client else 1
        r = 1 - d
        fb = D0 + d * ND
        rb = D0 + r * ND
        tf = T_D0 + d * TND
        cid = S[slot, C_ID]
        seq = h[H_SEQ]
        ack = h[H_ACK]
        win = h[H_WIN]
        # idle gap
        gap = t - T[slot, T_END]
        if (gap > T[slot, T_MAXIDLE] or S[slot, C_MAXIDLE_FRAME] == 0) and S[slot, C_FIRST_FRAME] != frame:
            T[slot, T_MAXIDLE] = gap
            S[slot, C_MAXIDLE_FRAME] = frame
        # counters
        S[slot, fb + D_PACKETS] += 1
        S[slot, fb + D_BYTES] += seglen
        S[slot, fb + D_IPBYTES] += h[H_IPLEN]
        if S[slot, fb + D_TTL] < 0:
            S[slot, fb + D_TTL] = h[H_TTL]
            T[slot, tf + TD_FIRST] = t
        T[slot, tf + TD_LAST] = t
        if seglen > 0:
            T[slot, tf + TD_LAST_PAYLOAD] = t
        # sequence base
        if syn and S[slot, fb + D_SYN_SEEN] == 0:
            S[slot, fb + D_SYN_SEEN] = 1
            S[slot, fb + D_ISN] = seq
            S[slot, fb + D_BASE] = seq
            S[slot, fb + D_BASE_SET] = 1
            if h[H_MSS] >= 0:
                S[slot, fb + D_MSS] = h[H_MSS]
            S[slot, fb + D_WSCALE] = h[H_WSCALE]
            S[slot, fb + D_SACKP] = h[H_SACKP]
            S[slot, fb + D_TSOPT] = h[H_TSOPT]
        if S[slot, fb + D_BASE_SET] == 0:
            S[slot, fb + D_BASE] = seq
            S[slot, fb + D_BASE_SET] = 1
        rel = _rel(seq - S[slot, fb + D_BASE])
        next_set = S[slot, fb + D_NEXT_SET] == 1
        nxt = S[slot, fb + D_NEXT]
        sfr = syn or fin or rst
        rev_win0 = S[slot, rb + D_WIN_SET] == 1 and S[slot, rb + D_WIN] == 0
        # --- analysis (Wireshark's order) ---
        ka = False
        if seglen == 1 and next_set and rel == nxt and rev_win0 and not sfr:
            S[slot, fb + D_ZWPROBE] += 1
            ne = _event(E, ET, ne, cid, EV_ZWPROBE, frame, d, rel, seglen, t)
        if win == 0 and not sfr:
            S[slot, fb + D_ZEROWIN] += 1
            ne = _event(E, ET, ne, cid, EV_ZEROWIN, frame, d, rel, seglen, t)
            _hist_repeat(S, Hs, slot, d, 87, S[slot, fb + D_ZEROWIN], D_W_NEXT)
        if next_set and rel > nxt and not rst:
            S[slot, fb + D_LOST] += 1
            ne = _event(E, ET, ne, cid, EV_LOST, frame, d, rel, seglen, t)
        if next_set and seglen <= 1 and not sfr and rel == nxt - 1:
            ka = True
            if rev_win0:
                # Linux probes a zero window with seq = next-1, len 0: a zero-window probe
                S[slot, fb + D_ZWPROBE] += 1
                ne = _event(E, ET, ne, cid, EV_ZWPROBE, frame, d, rel, seglen, t)
            else:
                S[slot, fb + D_KEEPALIVE] += 1
                ne = _event(E, ET, ne, cid, EV_KEEPALIVE, frame, d, rel, seglen, t)
        if seglen > 0 and not sfr and S[slot, rb + D_WIN_SET] == 1 and S[slot, rb + D_ACK_SET] == 1:
            scale = 0
            if S[slot, rb + D_WSCALE] >= 0 and S[slot, fb + D_WSCALE] >= 0:
                scale = S[slot, rb + D_WSCALE]
            rack = _rel(S[slot, rb + D_ACK] - S[slot, fb + D_BASE])
            if rel + seglen == rack + (S[slot, rb + D_WIN] << scale):
                S[slot, fb + D_WINFULL] += 1
                ne = _event(E, ET, ne, cid, EV_WINFULL, frame, d, rel, seglen, t)
        if (
            seglen == 0
            and not sfr
            and ackf
            and not ka
            and next_set
            and rel == nxt
            and S[slot, fb + D_ACK_SET] == 1
            and ack == S[slot, fb + D_ACK]
            and S[slot, fb + D_WIN_SET] == 1
            and win == S[slot, fb + D_WIN]
            and win != 0
            and S[slot, rb + D_LAST_KA] == 0
        ):
            S[slot, fb + D_DUPACKNUM] += 1
            S[slot, fb + D_DUPACK] += 1
            ne = _event(E, ET, ne, cid, EV_DUPACK, frame, d, rel, seglen, t)
        elif ackf and (S[slot, fb + D_ACK_SET] == 0 or ack != S[slot, fb + D_ACK] or seglen > 0):
            S[slot, fb + D_DUPACKNUM] = 0
        if (seglen > 0 or syn or fin) and next_set and not ka and rel < nxt:
            kind = np.int64(EV_RETRANS)
            if syn:
                kind = np.int64(EV_SYNRETX)
            elif (
                seglen > 0
                and S[slot, rb + D_DUPACKNUM] >= 2
                and S[slot, rb + D_ACK_SET] == 1
                and S[slot, rb + D_ACK] == seq
            ):
                kind = np.int64(EV_FASTRETX)
            else:
                thr = OOO_THRESHOLD
                hs = T[slot, T_SYNACK_TS] - T[slot, T_SYN_TS]
                if hs == hs and hs > 0:
                    thr = hs
                if t - T[slot, tf + TD_NEXT_TIME] < thr and nxt != rel + seglen:
                    kind = np.int64(EV_OOO)
                elif (
                    seglen > 0
                    and S[slot, rb + D_ACK_SET] == 1
                    and rel + seglen <= _rel(S[slot, rb + D_ACK] - S[slot, fb + D_BASE])
                ):
                    kind = np.int64(EV_SPURIOUS)
            if kind == EV_OOO:
                S[slot, fb + D_OOO] += 1
            else:
                S[slot, fb + D_RETRANS] += 1
                if kind == EV_FASTRETX:
                    S[slot, fb + D_FASTRETX] += 1
                elif kind == EV_SPURIOUS:
                    S[slot, fb + D_SPURIOUS] += 1
                _hist_repeat(S, Hs, slot, d, 84, S[slot, fb + D_RETRANS], D_T_NEXT)
            ne = _event(E, ET, ne, cid, kind, frame, d, rel, seglen, t)
        # --- state updates ---
        S[slot, fb + D_LAST_KA] = 1 if ka or (seglen == 1 and next_set and rel == nxt and rev_win0) else 0
        end = rel + seglen + (1 if syn else 0) + (1 if fin else 0)
        if not next_set or end > nxt:
            S[slot, fb + D_NEXT] = end
            S[slot, fb + D_NEXT_SET] = 1
            T[slot, tf + TD_NEXT_TIME] = t
        S[slot, fb + D_WIN] = win
        S[slot, fb + D_WIN_SET] = 1
        if ackf:
            S[slot, fb + D_ACK] = ack
            S[slot, fb + D_ACK_SET] = 1
        # handshake and history
        if syn and not ackf:
            S[slot, fb + D_SYNS] += 1
            if fin:
                _hist(S, Hs, slot, d, 81, 1 << 10)  # Q
            _hist(S, Hs, slot, d, 83, 1 << 0)  # S
            if d == 0 and S[slot, C_SYN_FRAME] == 0:
                S[slot, C_SYN_FRAME] = frame
                T[slot, T_SYN_TS] = t
        elif syn:
            S[slot, fb + D_SYNS] += 1
            S[slot, fb + D_SENT_SYNACK] = 1
            _hist(S, Hs, slot, d, 72, 1 << 1)  # H
            if d == 1 and S[slot, C_SYNACK_FRAME] == 0:
                S[slot, C_SYNACK_FRAME] = frame
                T[slot, T_SYNACK_TS] = t
        if seglen > 0:
            S[slot, fb + D_SENT_DATA] = 1
            _hist(S, Hs, slot, d, 68, 1 << 3)  # D
        elif ackf and not sfr:
            _hist(S, Hs, slot, d, 65, 1 << 2)  # A
            if d == 0 and S[slot, C_SYNACK_FRAME] != 0 and T[slot, T_ACK_TS] != T[slot, T_ACK_TS]:
                T[slot, T_ACK_TS] = t
        if d == 0 and ackf and S[slot, C_SYNACK_FRAME] != 0 and not syn:
            S[slot, C_HANDSHAKE_DONE] = 1
        if S[slot, D0 + D_SENT_DATA] == 1 and S[slot, D0 + ND + D_SENT_DATA] == 1:
            S[slot, C_HANDSHAKE_DONE] = 1
        if fin:
            S[slot, fb + D_FINS] += 1
            _hist(S, Hs, slot, d, 70, 1 << 4)  # F
            if S[slot, rb + D_FINS] > 0:
                S[slot, C_CLOSED] = 1
        if rst:
            S[slot, fb + D_RSTS] += 1
            _hist(S, Hs, slot, d, 82, 1 << 5)  # R
            ne = _event(E, ET, ne, cid, EV_RST, frame, d, rel, seglen, t)
            if S[slot, fb + D_RST_TTL] < 0:
                S[slot, fb + D_RST_TTL] = h[H_TTL]
                S[slot, fb + D_RST_IPID] = h[H_IPID]
                S[slot, fb + D_IPID_BEFORE_RST] = S[slot, fb + D_LAST_IPID]
            if S[slot, C_RESET_BY] < 0:
                S[slot, C_RESET_BY] = d
                S[slot, C_RESET_FRAME] = frame
                T[slot, T_RESET_TS] = t
                T[slot, T_IDLE_BEFORE_RST] = t - T[slot, T_END] if S[slot, C_FIRST_FRAME] != frame else 0.0
                if S[slot, C_HANDSHAKE_DONE] == 0 and S[slot, D0 + D_SYNS] + S[slot, D0 + ND + D_SYNS] > 0:
                    S[slot, C_RESET_PHASE] = 1  # (a connection seen mid-stream was established before)
                elif S[slot, D0 + D_FINS] + S[slot, D0 + ND + D_FINS] > 0:
                    S[slot, C_RESET_PHASE] = 3
                else:
                    S[slot, C_RESET_PHASE] = 2
            S[slot, C_CLOSED] = 1
        else:
            S[slot, fb + D_LAST_IPID] = h[H_IPID]
        T[slot, T_END] = max(T[slot, T_END], t)
        S[slot, C_LAST_FRAME] = frame
        # outputs
        P[i, P_CONN] = cid + 1
        P[i, P_SLOT] = slot
        P[i, P_DIR] = d
        P[i, P_REL] = rel
        if (
            S[slot, C_APP] == 1
            and (seglen > 0 or fin or rst)
            and S[slot, fb + D_APP_DONE] == 0
            and (rel + seglen > S[slot, fb + D_SKIP_UNTIL] or fin or rst)
        ):
            P[i, P_DELIVER] = 1
    return P, E, ET, ne, nf, overflow


@njit(cache=True)
def sweep(S: Any, T: Any, V: Any, U: Any, now: float, linger: float, idle: float, everything: bool) -> Any:
    """Finish connections: closed and quiet for ``linger`` s, idle for ``idle`` s, or all (EOF).

    Removes them from the table and returns their slots (rows still intact), in the order the
    connections opened.
    """
    n = U[conntable.LIVE]
    out = np.empty(n, np.int64)
    where = np.empty(n, np.int64)
    k = 0
    for i in range(len(V)):
        slot = V[i]
        if slot < 0:
            continue
        quiet = now - T[slot, T_END]
        done = everything
        if S[slot, C_CLOSED] == 1 and quiet > linger:
            done = True
        elif quiet > idle:
            done = True
            S[slot, C_FINISHED_BY] = 3
        if done:
            out[k] = slot
            where[k] = i
            k += 1
    ids = np.empty(k, np.int64)
    for j in range(k):
        conntable.remove(V, U, where[j])
        ids[j] = S[out[j], C_ID]
    return out[:k][np.argsort(ids, kind="mergesort")]


@njit(cache=True)
def release(free: Any, G: Any, slots: Any) -> None:
    for s in slots:
        free[G[G_FREE_TOP]] = s
        G[G_FREE_TOP] += 1
        G[G_LIVE] -= 1


if aot is not None:  # the kernels compiled ahead of time (_jit.py)
    track = aot.track
    sweep = aot.sweep
    release = aot.release


# =============================================================================================
# The Python side: state arrays, finished connections as evidence records, the app-layer hook
# =============================================================================================

_DIRS = (Direction.CLIENT, Direction.SERVER)
BUILD_CHUNK = 4096  # finished connections turned into records at a time (bounds the EOF spike)
FINISHED_BY = {0: "eof", 1: "fin", 2: "rst", 3: "idle", 4: "reuse"}
PHASES = {1: "handshake", 2: "established", 3: "closing"}


def _ip_text(hi: int, lo: int) -> str:
    if hi == 0 and (lo >> 32) == 0xFFFF:
        v = lo & 0xFFFFFFFF
        return f"{v >> 24}.{(v >> 16) & 255}.{(v >> 8) & 255}.{v & 255}"
    return str(ipaddress.IPv6Address(((hi & 0xFFFFFFFFFFFFFFFF) << 64) | (lo & 0xFFFFFFFFFFFFFFFF)))


@dataclass(slots=True)
class ConnectionLines:
    """Finished clean connections the rules will not see, already as JSON text (fast lane).

    Produced instead of :class:`Connection` records when :attr:`Engine.lite` is on, for
    ``SF``/``S1`` connections without TCP events whose app-layer analyzer (if any) is quiet:
    ``json`` holds ``count`` objects of the ``connections`` list joined by ``",\n    "`` (one
    streamed item of json_report), written by :func:`tcpdoctor.sources.pcap.lines.format_lines`;
    ``states`` counts them by conn_state.
    """

    count: int
    states: dict[str, int]
    json: str


@dataclass(slots=True)
class _Stream:
    """App-layer delivery state of one direction."""

    next: int | None = None  # next relative sequence number to deliver
    skip_until: int = 0
    delivered: int = 0
    done: bool = False


@dataclass(slots=True)
class _AppConn:
    analyzer: StreamAnalyzer
    streams: tuple[_Stream, _Stream] = field(default_factory=lambda: (_Stream(), _Stream()))


class Engine:
    """Feed batches (:meth:`feed`), get finished :class:`Connection` values back, then :meth:`close`.

    ``factories`` are the app-layer parsers (see :class:`tcpdoctor.evidence.pcap.AnalyzerFactory`);
    ``max_app_bytes`` bounds what each direction of a connection delivers to them.
    """

    def __init__(
        self,
        factories: Iterable[AnalyzerFactory] = (),
        *,
        linger: float = 5.0,
        idle_timeout: float = 3600.0,
        max_app_bytes: int = 256 * 1024,
        capacity: int = 1 << 18,  # rows; np.zeros maps them lazily: only rows ever used become resident
    ) -> None:
        self.factories = list(factories)
        self._reads_connection = any(getattr(f, "reads_connection", True) for f in self.factories)
        self.linger = linger
        self.idle_timeout = idle_timeout
        self.max_app_bytes = max_app_bytes
        self.S = np.zeros((capacity, S_COLS), np.int64)
        self.T = np.zeros((capacity, T_COLS), np.float64)
        self.Hs = np.zeros((capacity, HIST_MAX), np.uint8)
        self.free = np.arange(capacity - 1, -1, -1, dtype=np.int64)
        self.G = np.zeros(G_COLS, np.int64)
        self.G[G_FREE_TOP] = capacity
        self.G[G_NEXT_ID] = 0
        self.K, self.V, self.U = conntable.new()
        self.events: dict[int, dict[int, list[TcpEvent]]] = {}
        self.app: dict[int, _AppConn | None] = {}
        self.now = float("-inf")
        self.stats = CaptureStats()
        self.unknown_link = 0
        self.peak_live = 0
        self._ips: dict[tuple[int, int], str] = {}
        self._state_memo: dict[tuple[Any, ...], str] = {}
        self.lite = False  # clean connections as ConnectionLines (set by CaptureAnalysis)
        # the compiled HTTP/1.1 screen (h1screen): only in front of the app layer alone, and only
        # when the payload can be read again for a hand-over (CaptureAnalysis sets payload_fd)
        self.screens = len(self.factories) == 1 and getattr(self.factories[0], "screen", None) == "http1"
        self.payload_fd: int | None = None
        self.A = np.zeros((capacity, h1screen.A_COLS), np.int64)
        self.R = np.zeros((capacity, h1screen.MAX_RECORDS, h1screen.R_COLS), np.int64)
        self.RT = np.zeros((capacity, h1screen.MAX_RECORDS), np.float64)
        self.replays = 0  # connections handed from the screen to the Python app layer
        self.screened_quiet = 0  # connections the screen alone proved quiet

    # -- capacity ------------------------------------------------------------------------------
    def _ensure(self, n: int) -> None:
        free_top = int(self.G[G_FREE_TOP])
        if free_top >= n + 16:
            return
        old = len(self.S)
        new = max(old * 2, old + n + 16)
        for name in ("S", "T", "Hs", "A", "R", "RT"):
            # np.zeros maps fresh zero pages: only the rows ever used become resident (an in-place
            # ndarray.resize zero-fills the new rows and measured 585 MB peak instead of 403 MB)
            arr = getattr(self, name)
            grown = np.zeros((new, *arr.shape[1:]), arr.dtype)
            grown[:old] = arr
            setattr(self, name, grown)
        free = np.empty(new, np.int64)
        free[:free_top] = self.free[:free_top]
        free[free_top : free_top + new - old] = np.arange(new - 1, old - 1, -1)
        self.free = free
        self.G[G_FREE_TOP] = free_top + new - old

    # -- batches -------------------------------------------------------------------------------
    def feed(self, batch: Batch) -> Iterator[Connection | ConnectionLines]:
        n = len(batch)
        if n == 0:
            return
        H, unknown = decode(batch.buf, batch.offset, batch.caplen, batch.linktype)
        self.unknown_link += int(unknown)
        st = self.stats
        st.packets += n
        st.bytes += int(batch.caplen.sum())
        tcp = int(H[:, H_OK].sum())
        st.tcp_packets += tcp
        st.other_packets += n - tcp
        t0, t1 = float(batch.ts.min()), float(batch.ts.max())
        st.first_ts = t0 if st.first_ts is None else min(st.first_ts, t0)
        st.last_ts = t1 if st.last_ts is None else max(st.last_ts, t1)
        self._ensure(n)
        self.K, self.V, self.U = conntable.reserve(self.K, self.V, self.U, n)
        finished = np.empty(n, np.int64)
        P, E, ET, ne, nf, _overflow = track(
            H,
            batch.ts,
            batch.first_frame,
            self.S,
            self.T,
            self.Hs,
            self.K,
            self.V,
            self.U,
            self.free,
            self.G,
            finished,
        )
        self.peak_live = max(self.peak_live, int(self.G[G_LIVE]))
        if ne:
            self._collect_events(E[:ne], ET[:ne])
        if self.factories:
            if self.screens and self.payload_fd is not None:
                h1screen.screen(
                    P, H, batch.buf, batch.ts, batch.first_frame, batch.file_offset, self.A, self.R,
                    self.RT, self.max_app_bytes, P_CONN, P_SLOT, P_DIR, P_REL, P_DELIVER,
                )  # fmt: skip
            self._deliver(batch, H, P)
        if nf:
            yield from self._finish(finished[:nf])
        self.now = max(self.now, t1)
        # after every batch: whether a new SYN on a 4-tuple finds its previous connection still
        # here (a "reuse") depends on it, so sweeping less often would change results
        yield from self._finish(
            sweep(self.S, self.T, self.V, self.U, self.now, self.linger, self.idle_timeout, False)
        )

    def close(self) -> Iterator[Connection | ConnectionLines]:
        """The end of the capture: every live connection is finished."""
        yield from self._finish(
            sweep(self.S, self.T, self.V, self.U, self.now, self.linger, self.idle_timeout, True)
        )

    # -- events --------------------------------------------------------------------------------
    def _collect_events(self, E: Any, ET: Any) -> None:
        events = self.events
        for (cid, kind, frame, d, rel, seglen, _), ts in zip(E.tolist(), ET.tolist(), strict=True):
            per = events.get(cid)
            if per is None:
                per = events[cid] = {}
            lst = per.get(kind)
            if lst is None:
                lst = per[kind] = []
            if len(lst) < MAX_EVENTS_PER_KIND:
                lst.append(TcpEvent(EVENT_CODES[kind], frame, ts, _DIRS[d], rel, seglen))

    # -- app layer -----------------------------------------------------------------------------
    def _deliver(self, batch: Batch, H: Any, P: Any) -> None:
        """Hand the flagged packets' payload, FIN and RST to the app layer, in capture order.

        One ``tolist`` of the needed columns per batch; packets of connections the app layer
        declined (or whose streams are done) cost a dict lookup; payload goes out as slices of
        the batch buffer (one copy, of the bytes not skipped). A packet marked
        ``DELIVER_REPLAY`` is where the screen gave its connection up: what it recorded is
        replayed first.
        """
        idx = np.flatnonzero(P[:, P_DELIVER])
        if not len(idx):
            return
        buf = batch.buf.data  # a memoryview: cheaper to slice than the array
        cols = np.empty((len(idx), 10), np.int64)
        cols[:, 0] = idx
        cols[:, 1:6] = P[idx, : P_DELIVER + 1]  # conn id + 1, slot, direction, relative seq, mark
        cols[:, 6:10] = H[idx][:, [H_FLAGS, H_SEGLEN, H_POFF, H_PCAP]]
        tss = batch.ts[idx].tolist()
        first = batch.first_frame
        for (i, cid1, slot, d, rel, mark, flags, seglen, poff, pcap), ts in zip(
            cols.tolist(), tss, strict=True
        ):
            if mark == h1screen.DELIVER_REPLAY:
                self._replay(slot, cid1 - 1)
            self._deliver_one(cid1 - 1, slot, d, rel, flags, seglen, buf, poff, pcap, first + i, ts)

    def _deliver_one(
        self,
        cid: int,
        slot: int,
        d: int,
        rel: int,
        flags: int,
        seglen: int,
        buf: Any,
        poff: int,
        pcap: int,
        frame: int,
        ts: float,
    ) -> None:
        ac = self.app.get(cid, False)
        if ac is None:
            return
        if ac is False:
            if seglen == 0:
                return
            ac = self._open_app(cid, slot, d, buf[poff : poff + pcap].tobytes())
            if ac is None:
                return
        assert isinstance(ac, _AppConn)
        stream = ac.streams[d]
        if seglen > 0 and not stream.done:
            self._data(ac, stream, _DIRS[d], slot, cid, buf, rel, seglen, poff, pcap, frame, ts)
        if flags & (FIN | RST):
            ac.analyzer.closed(_DIRS[d], frame, ts, bool(flags & RST))

    def _replay(self, slot: int, cid: int) -> None:
        """Feed the deliveries the screen recorded for ``slot`` to the Python app layer, read
        again from the capture file: the analyzer ends where it would have been all along."""
        fd = self.payload_fd
        assert fd is not None
        n = int(self.A[slot, h1screen.A_NREC])
        self.A[slot, h1screen.A_MODE] = h1screen.MODE_PYTHON
        self.A[slot, h1screen.A_NREC] = 0
        self.replays += 1
        recs = self.R[slot, :n].tolist()
        for (off, pcap, seglen, rel, d, flags, frame), ts in zip(
            recs, self.RT[slot, :n].tolist(), strict=True
        ):
            data = os.pread(fd, pcap, off) if pcap else b""
            if len(data) != pcap:
                raise InputError(f"byte offset {off}: the capture changed while it was read")
            self._deliver_one(cid, slot, d, rel, flags, seglen, memoryview(data), 0, pcap, frame, ts)

    def _screen_results(self, slots: Any, cids: Any, clean: Any) -> None:
        """Finished connections the screen followed: replay those whose app result is needed
        after all (not clean (``clean`` False: not SF/S1, or reset), or not quiet)."""
        if not (self.screens and self.payload_fd is not None):
            return
        verdict = h1screen.verdicts(self.A, slots, cids)
        self.screened_quiet += int(((verdict == 1) & clean).sum())
        need = np.flatnonzero((verdict == 0) | ((verdict == 1) & ~clean))
        for j in need.tolist():
            self._replay(int(slots[j]), int(cids[j]))

    def _open_app(self, cid: int, slot: int, d: int, first: bytes) -> _AppConn | None:
        # a factory that declares ``reads_connection = False`` gets a placeholder, not the record
        conn = self._partial(slot) if self._reads_connection else _UNREAD
        for factory in self.factories:
            analyzer = factory.open(conn, _DIRS[d], first)
            if analyzer is not None:
                ac = _AppConn(analyzer)
                self.app[cid] = ac
                return ac
        self.app[cid] = None
        self.S[slot, C_APP] = 0
        return None

    def _data(
        self,
        ac: _AppConn,
        stream: _Stream,
        direction: Direction,
        slot: int,
        cid: int,
        buf: Any,
        rel: int,
        seglen: int,
        poff: int,
        pcap: int,
        frame: int,
        ts: float,
    ) -> None:
        an = ac.analyzer
        nxt = stream.next
        if nxt is None:
            nxt = rel
        cursor = nxt if nxt >= stream.skip_until else stream.skip_until
        end = rel + seglen
        if end <= cursor:
            return  # retransmitted or skipped bytes
        stream.next = end
        if rel == cursor and pcap == seglen:  # the usual case: the whole segment is new and captured
            stream.delivered += pcap
            result = an.data(direction, buf[poff : poff + pcap].tobytes(), frame, ts)
        else:
            result = CONTINUE
            if rel > cursor:
                result = an.gap(direction, rel - cursor, frame, ts)
                cursor = rel
            if result == CONTINUE:
                lo = cursor - rel
                if lo < pcap:
                    stream.delivered += pcap - lo
                    result = an.data(direction, buf[poff + lo : poff + pcap].tobytes(), frame, ts)
                if result == CONTINUE and rel + pcap < end:
                    result = an.gap(direction, end - max(rel + pcap, cursor), frame, ts)
        if result == CONTINUE:
            if stream.delivered <= self.max_app_bytes:
                return
            result = STOP
        live = self.S[slot, C_ID] == cid
        base = D0 + int(direction) * ND
        if result == STOP:
            stream.done = True
            if live:
                self.S[slot, base + D_APP_DONE] = 1
                if ac.streams[0].done and ac.streams[1].done:
                    self.S[slot, C_APP] = 0
        elif result > 0:
            stream.skip_until = end + result
            if live:
                self.S[slot, base + D_SKIP_UNTIL] = stream.skip_until

    # -- finished connections ------------------------------------------------------------------
    def _finish(self, slots: Any) -> Iterator[Connection | ConnectionLines]:
        if not len(slots):
            return
        try:
            for start in range(0, len(slots), BUILD_CHUNK):
                for conn in self._build_many(slots[start : start + BUILD_CHUNK]):
                    if isinstance(conn, ConnectionLines):
                        self.stats.connections += conn.count  # their app entries: _build_many
                        yield conn
                        continue
                    ac = self.app.pop(conn.id - 1, None)
                    if ac is not None and isinstance(conn, Connection):
                        ac.analyzer.finish(conn)
                    self.stats.connections += 1
                    yield conn
        finally:
            release(self.free, self.G, slots)

    def _ip(self, hi: int, lo: int) -> str:
        key = (hi, lo)
        text = self._ips.get(key)
        if text is None:
            if len(self._ips) > 100_000:
                self._ips.clear()
            text = self._ips[key] = _ip_text(hi, lo)
        return text

    def _partial(self, slot: int) -> Connection:
        """The connection so far (endpoints, handshake), for AnalyzerFactory.open."""
        s = self.S[slot].item  # a few scalar reads: cheaper than converting the whole row
        t = self.T[slot].item
        return Connection(
            id=s(C_ID) + 1,
            client=Endpoint(self._ip(s(C_CA_HI), s(C_CA_LO)), s(C_CPORT)),
            server=Endpoint(self._ip(s(C_SA_HI), s(C_SA_LO)), s(C_SPORT)),
            start=t(T_START),
            end=t(T_END),
            first_frame=s(C_FIRST_FRAME),
            last_frame=s(C_LAST_FRAME),
            syn_frame=s(C_SYN_FRAME) or None,
            syn_ts=_num(t(T_SYN_TS)),
            synack_frame=s(C_SYNACK_FRAME) or None,
            synack_ts=_num(t(T_SYNACK_TS)),
        )

    def _build_many(self, slots: Any) -> list[Connection | ConnectionLines]:
        """Finished connections from their rows, a chunk at a time.

        Per chunk, with numpy: the states (``conn_state`` once per distinct history and
        signature), the fast-lane decision and the lane's JSON (one :class:`ConnectionLines`,
        written by a compiled loop); the other rows become :class:`Connection` records, their
        per-direction stats converted a chunk at a time.
        """
        S = self.S[slots]
        T = self.T[slots]
        hists = self.Hs[slots]
        n = len(slots)
        out: list[Connection | ConnectionLines] = []
        memo = self._state_memo
        ip = self._ip
        events = self.events
        app = self.app
        # what conn_state reads, as one int per row: which counters are non-zero, and whether a
        # side sent several SYNs; with the history (zero after its letters: rows are zeroed when
        # allocated) it is the key of the state, computed once per distinct key of the chunk
        flags = np.concatenate([S[:, _STATE_KEY_COLS] > 0, S[:, _SYN_COLS] > 1], axis=1)
        sigs = (flags.astype(np.int64) << np.arange(flags.shape[1], dtype=np.int64)).sum(axis=1)
        keys = np.empty((n, HIST_MAX + 8), np.uint8)
        keys[:, :HIST_MAX] = hists
        keys[:, HIST_MAX:] = sigs.astype("<i8").view(np.uint8).reshape(n, 8)
        _, first, inverse = np.unique(
            keys.view(f"V{HIST_MAX + 8}").ravel(), return_index=True, return_inverse=True
        )
        inverse = inverse.reshape(-1)
        hist_u: list[str] = []
        code_u = np.empty(len(first), np.int64)
        for u, (k, hl, sig) in enumerate(
            zip(first.tolist(), S[first, C_HISTLEN].tolist(), sigs[first].tolist(), strict=True)
        ):
            hist = hists[k, :hl].tobytes().decode("ascii")
            state = memo.get((hist, sig))
            if state is None:
                full_row = self.S[slots[k]].tolist()
                state = memo[(hist, sig)] = conn_state(_sent(full_row, 0), _sent(full_row, 1), hist)
                if len(memo) > 10_000:
                    memo.clear()
            hist_u.append(hist)
            code_u[u] = _STATE_CODE[state]
        codes = code_u[inverse]
        # connections the HTTP/1.1 screen followed get their app result now if it is needed
        clean = _CLEAN_BY_CODE[codes]
        self._screen_results(slots, S[:, C_ID], clean & (S[:, C_RESET_BY] < 0))
        # the fast lane: clean, no TCP event, no app-layer analyzer or a quiet one
        lite = np.zeros(n, np.bool_)
        if self.lite:
            lite = clean & lines.formattable(T[:, T_START], T[:, T_END])
            if events:
                lite &= ~np.isin(S[:, C_ID], np.fromiter(events, np.int64, len(events)))
            if app:
                cand = np.flatnonzero(lite)
                for k, cid, rb in zip(
                    cand.tolist(), S[cand, C_ID].tolist(), S[cand, C_RESET_BY].tolist(), strict=True
                ):
                    ac = app.get(cid)
                    if ac is not None and not (rb < 0 and _quiet(ac)):
                        lite[k] = False
        if lite.any():
            L = S[lite]
            cids = L[:, C_ID]
            M = L[:, _LINE_COLS]
            M[:, lines.L_ID] += 1
            lite_codes = codes[lite]
            M[:, lines.L_STATE] = lite_codes
            M[:, lines.L_RETX] = L[:, D0 + D_RETRANS] + L[:, D0 + ND + D_RETRANS]
            text = lines.format_lines(M, T[lite][:, [T_START, T_END]], hists[lite], _STATE_TABLE)
            counts = np.bincount(lite_codes, minlength=len(CONN_STATES)).tolist()
            if app:
                for cid in cids.tolist():
                    app.pop(cid, None)  # quiet: finish() is not called
            out.append(
                ConnectionLines(len(cids), {CONN_STATES[c]: x for c, x in enumerate(counts) if x}, text)
            )
        full = np.flatnonzero(~lite)
        if not len(full):
            return out
        Sf = S[full]
        Tf = T[full]
        cols = {c: i for i, c in enumerate(_CONN_COLS)}
        i_id, i_chi, i_clo, i_shi, i_slo, i_cp, i_sp = (
            cols[c] for c in (C_ID, C_CA_HI, C_CA_LO, C_SA_HI, C_SA_LO, C_CPORT, C_SPORT)
        )
        i_ff, i_lf, i_rb, i_rf, i_rp, i_sf, i_saf, i_mif, i_fb, i_cl = (
            cols[c]
            for c in (
                C_FIRST_FRAME,
                C_LAST_FRAME,
                C_RESET_BY,
                C_RESET_FRAME,
                C_RESET_PHASE,
                C_SYN_FRAME,
                C_SYNACK_FRAME,
                C_MAXIDLE_FRAME,
                C_FINISHED_BY,
                C_CLOSED,
            )
        )
        rows = Sf[:, _CONN_COLS].tolist()
        trows = Tf.tolist()
        hist_of = inverse[full].tolist()
        state_of = codes[full].tolist()
        dirs = [_direction_rows(Sf, Tf, d) for d in (0, 1)]
        for j, (s, t) in enumerate(zip(rows, trows, strict=True)):
            cid = s[i_id]
            hist = hist_u[hist_of[j]]
            state = CONN_STATES[state_of[j]]
            reset_by = s[i_rb]
            conn = Connection(
                cid + 1,
                Endpoint(ip(s[i_chi], s[i_clo]), s[i_cp]),
                Endpoint(ip(s[i_shi], s[i_slo]), s[i_sp]),
                t[T_START],
                t[T_END],
                s[i_ff],
                s[i_lf],
                "OTH",
                hist,
                DirectionStats(*dirs[0][j]),
                DirectionStats(*dirs[1][j]),
                None if reset_by < 0 else ("client" if reset_by == 0 else "server"),
                s[i_rf] or None,
                _num(t[T_RESET_TS]),
                PHASES.get(s[i_rp]),
                _num(t[T_IDLE_BEFORE_RST]),
                s[i_sf] or None,
                _num(t[T_SYN_TS]),
                s[i_saf] or None,
                _num(t[T_SYNACK_TS]),
                _num(t[T_ACK_TS]),
                t[T_MAXIDLE],
                s[i_mif] or None,
            )
            conn.state = state
            fb = s[i_fb]
            if fb == 0:
                fb = 2 if reset_by >= 0 else (1 if s[i_cl] else 0)
            conn.finished_by = FINISHED_BY[fb]
            per = events.pop(cid, None)
            if per:
                evs = [e for lst in per.values() for e in lst]
                evs.sort(key=lambda e: e.frame)
                conn.events = evs
            out.append(conn)
        return out


# DirectionStats fields in declaration order: int columns, then the three timestamps
_DS_INT = (
    D_PACKETS,
    D_BYTES,
    D_IPBYTES,
    D_RETRANS,
    D_FASTRETX,
    D_SPURIOUS,
    D_OOO,
    D_DUPACK,
    D_ZEROWIN,
    D_ZWPROBE,
    D_WINFULL,
    D_KEEPALIVE,
    D_LOST,
    D_SYNS,
    D_FINS,
    D_RSTS,
    D_ISN,
    D_MSS,
    D_WSCALE,
    D_SACKP,
    D_TSOPT,
    D_TTL,
    D_RST_TTL,
    D_RST_IPID,
    D_IPID_BEFORE_RST,
)
_DS_OPTIONAL = [
    _DS_INT.index(c) for c in (D_ISN, D_MSS, D_WSCALE, D_TTL, D_RST_TTL, D_RST_IPID, D_IPID_BEFORE_RST)
]
_DS_BOOL = [_DS_INT.index(c) for c in (D_SACKP, D_TSOPT)]
_CONN_COLS: list[int] = []  # filled below: the S columns _build_many reads
_STATE_KEY_COLS = [
    D0 + d * ND + c for d in (0, 1) for c in (D_PACKETS, D_SYNS, D_SENT_SYNACK, D_FINS, D_RSTS, D_BYTES)
]  # with the history (which has the S letter) and whether a side sent several SYNs: all conn_state reads


_CONN_COLS.extend(
    [
        C_ID,
        C_CA_HI,
        C_CA_LO,
        C_SA_HI,
        C_SA_LO,
        C_CPORT,
        C_SPORT,
        C_FIRST_FRAME,
        C_LAST_FRAME,
        C_RESET_BY,
        C_RESET_FRAME,
        C_RESET_PHASE,
        C_SYN_FRAME,
        C_SYNACK_FRAME,
        C_MAXIDLE_FRAME,
        C_FINISHED_BY,
        C_HISTLEN,
        C_CLOSED,
        *_STATE_KEY_COLS,
        D0 + D_SYNS,
        D0 + ND + D_SYNS,
    ]
)


def _direction_rows(S: Any, T: Any, d: int) -> list[list[Any]]:
    """Per connection, the positional arguments of DirectionStats for direction ``d``."""
    raw = S[:, [D0 + d * ND + c for c in _DS_INT]]
    m = raw.astype(object)
    for j in _DS_OPTIONAL:
        m[raw[:, j] < 0, j] = None
    for j in _DS_BOOL:
        m[:, j] = raw[:, j] != 0
        m[:, j] = [bool(x) for x in m[:, j]]
    tb = T_D0 + d * TND
    f = T[:, [tb + TD_FIRST, tb + TD_LAST, tb + TD_LAST_PAYLOAD]].astype(object)
    no_packets = raw[:, 0] == 0
    f[no_packets, 0] = None
    f[no_packets, 1] = None
    f[raw[:, 1] == 0, 2] = None
    rows: list[list[Any]] = np.concatenate([m, f], axis=1).tolist()
    return rows


def _quiet(ac: _AppConn | None) -> bool:
    """The app layer keeps nothing from this clean connection: an analyzer may say so with an
    optional ``quiet()`` (then its finish() is not called and the fast lane may take the record)."""
    if ac is None:
        return True
    quiet = getattr(ac.analyzer, "quiet", None)
    return callable(quiet) and bool(quiet())


# what AnalyzerFactory.open receives when no factory reads it (building the record costs ~5 us)
_UNREAD = Connection(0, Endpoint("", 0), Endpoint("", 0), 0.0, 0.0, 0, 0)


def _num(x: float) -> float | None:
    return None if x != x else x


def _sent(s: list[int], d: int) -> Sent:
    b = D0 + d * ND
    syns = s[b + D_SYNS]
    synack = s[b + D_SENT_SYNACK] == 1
    return Sent(
        packets=s[b + D_PACKETS],
        syn=syns > 0 and not (synack and syns == 1) and (s[b + D_HIST] & 1) != 0,
        synack=synack,
        fin=s[b + D_FINS] > 0,
        rst=s[b + D_RSTS] > 0,
        bytes=s[b + D_BYTES],
    )


_CLEAN_STATES = frozenset({"SF", "S1"})
# states as codes (index into CONN_STATES) for the chunk-wide numpy work of _build_many
_STATE_CODE = {name: code for code, name in enumerate(CONN_STATES)}
_CLEAN_BY_CODE = np.array([name in _CLEAN_STATES for name in CONN_STATES])
_STATE_TABLE = lines.state_table(CONN_STATES)
_SYN_COLS = [D0 + D_SYNS, D0 + ND + D_SYNS]
# the S columns of the fast lane's matrix, in lines.L_* order (L_STATE and L_RETX are overwritten)
_LINE_COLS = [
    C_ID,
    C_CA_HI,
    C_CA_LO,
    C_CPORT,
    C_SA_HI,
    C_SA_LO,
    C_SPORT,
    C_ID,
    C_HISTLEN,
    D0 + D_PACKETS,
    D0 + D_BYTES,
    D0 + ND + D_PACKETS,
    D0 + ND + D_BYTES,
    D0 + D_RETRANS,
    C_FIRST_FRAME,
    C_LAST_FRAME,
]


class CaptureAnalysis:
    """One capture, analysed as a stream: iterate :meth:`connections` (or call :meth:`run`).

    Every finished connection is passed to the ``observers``, kept in :attr:`evidence` when
    the rules need it (see :class:`PcapEvidence`), and yielded. After the iteration
    :attr:`evidence` has the exact totals and :attr:`evidence.stats` the throughput.
    """

    def __init__(
        self,
        path: str,
        factories: Iterable[AnalyzerFactory] = (),
        observers: Iterable[ConnectionObserver] = (),
        *,
        keep_clean: int = 10_000,
        keep_notable: int = 20_000,
        progress: Callable[[int, int | None], None] | None = None,
        engine: Engine | None = None,
        lite: bool = False,
    ) -> None:
        self.reader = open_capture(path)
        self.engine = engine or Engine(factories)
        self.engine.payload_fd = self.reader.payload_fd()
        self.observers = list(observers)
        self.keep_clean = keep_clean
        self.keep_notable = keep_notable
        self.progress = progress
        self.evidence = PcapEvidence(path=self.reader.name, stats=self.engine.stats)
        for factory in self.engine.factories:
            bind = getattr(factory, "bind", None)  # factories that aggregate over every connection
            if callable(bind):
                bind(self.evidence)
        # once keep_clean clean connections are kept, further clean ones may skip the objects
        self.lite_allowed = lite and not self.observers
        self.done = False
        self._batches: Iterator[Batch] | None = None
        self._pending: list[Batch] = []

    def prime(self) -> None:
        """Read ahead to the first packet, so that an unreadable capture is known before any output.

        Raises :class:`InputError` when no packet can be read or none can be decoded.
        """
        if self._batches is not None:
            return
        self._batches = self.reader.batches()
        for batch in self._batches:
            self._pending.append(batch)
            if len(batch):
                break
        frames = sum(len(b) for b in self._pending)
        first_problem = f": {self.reader.problems[0]}" if self.reader.problems else ""
        if frames == 0:
            raise InputError(f"{self.reader.name}: no packet could be read{first_problem}")
        links: set[int] = set()
        for batch in self._pending:
            links.update(int(x) for x in np.unique(batch.linktype))
        if links and not links & SUPPORTED_LINKTYPES and self.reader.format == "pcap":
            raise InputError(
                f"{self.reader.name}: byte offset 20: link type {min(links)} is not supported "
                f"(supported: {', '.join(str(x) for x in sorted(SUPPORTED_LINKTYPES))})"
            )

    def connections(self) -> Iterator[Connection]:
        """Every finished connection as a :class:`Connection` record."""
        for conn in self.stream():
            assert isinstance(conn, Connection)
            yield conn

    def stream(self) -> Iterator[Connection | ConnectionLines]:
        """Like :meth:`connections`, but with ``lite=True`` the clean connections beyond
        ``keep_clean`` come as :class:`ConnectionLines` (their JSON, a chunk at a time), which
        is much cheaper."""
        started = time.perf_counter()
        ev = self.evidence
        self.prime()
        assert self._batches is not None
        # The analysis allocates millions of short-lived acyclic objects: the cyclic collector
        # would rescan the retained connections over and over (measured: 2.4x slower).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for batch in itertools.chain(self._pending, self._batches):
                yield from self._emit(self.engine.feed(batch))
                if self.progress is not None:
                    self.progress(self.reader.bytes_read, self.reader.size)
            self._pending = []
            yield from self._emit(self.engine.close())
        finally:
            if gc_was_enabled:
                gc.enable()
            st = ev.stats
            st.seconds = time.perf_counter() - started
            if self.engine.unknown_link:
                self.reader.problem(f"{self.engine.unknown_link} packets of an unsupported link type skipped")
            st.problems = list(self.reader.problems)
            st.problem_count = self.reader.problem_count
            self.done = True

    def _emit(self, conns: Iterator[Connection | ConnectionLines]) -> Iterator[Connection | ConnectionLines]:
        ev = self.evidence
        for conn in conns:
            if isinstance(conn, ConnectionLines):
                ev.states.update(conn.states)
                ev.clean_dropped += conn.count
                yield conn
                continue
            ev.states[conn.state] += 1
            if conn.reset_by:
                ev.resets[(conn.reset_by, conn.reset_phase or "?")] += 1
            if conn.events:
                for kind, n in _event_totals(conn):
                    ev.events[kind] += n
            if conn.state not in _CLEAN_STATES or conn.events:
                if ev.notable_kept < self.keep_notable:
                    ev.connections.append(conn)
                    ev.notable_kept += 1
                else:
                    ev.notable_dropped += 1
            elif ev.clean_kept < self.keep_clean:
                ev.connections.append(conn)
                ev.clean_kept += 1
                if ev.clean_kept >= self.keep_clean and self.lite_allowed:
                    self.engine.lite = True
            else:
                ev.clean_dropped += 1
            for observer in self.observers:
                observer(conn)
            yield conn

    def run(self) -> PcapEvidence:
        for _ in self.connections():
            pass
        return self.evidence

    @property
    def readable(self) -> bool:
        """False when nothing in the file could be analysed (exit 2)."""
        st = self.evidence.stats
        return st.packets > 0 and (st.tcp_packets > 0 or self.engine.unknown_link < st.packets)


def _event_totals(conn: Connection) -> Iterator[tuple[str, int]]:
    """Exact per-kind segment counts of a connection (its event list is capped)."""
    c, s = conn.c2s, conn.s2c
    yield "retransmission", c.retransmissions + s.retransmissions
    yield "fast_retransmission", c.fast_retransmissions + s.fast_retransmissions
    yield "spurious_retransmission", c.spurious_retransmissions + s.spurious_retransmissions
    yield "out_of_order", c.out_of_order + s.out_of_order
    yield "dup_ack", c.dup_acks + s.dup_acks
    yield "zero_window", c.zero_windows + s.zero_windows
    yield "zero_window_probe", c.zero_window_probes + s.zero_window_probes
    yield "window_full", c.window_full + s.window_full
    yield "keep_alive", c.keep_alives + s.keep_alives
    yield "lost_segment", c.lost_segments + s.lost_segments
    yield "rst", c.rsts + s.rsts
