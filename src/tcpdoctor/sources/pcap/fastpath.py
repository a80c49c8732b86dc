"""The compiled fast path: record framing and link/IP/TCP header decoding, a batch at a time.

Every function here is a numba ``njit`` loop over a numpy byte array (the chunk of the
file) that writes numpy arrays: no Python object per packet. Compiled once and cached on
disk (``cache=True``), so only the very first run pays the compilation.

Link types: Ethernet (1) with any stack of 802.1Q / 802.1ad / QinQ (0x8100, 0x88a8, 0x9100)
tags, Linux cooked SLL (113) and SLL2 (276), raw IP (12, 14, 101), raw IPv4 (228) and IPv6
(229), BSD loopback NULL (0, host byte order) and LOOP (108, network byte order).
IPv4: options skipped by IHL, fragments other than the first are not TCP headers (skipped),
the payload is bounded by Total Length (Ethernet padding is not data). IPv6: hop-by-hop,
routing, destination options, fragment, AH and mobility headers are walked to TCP.
TCP: options MSS, window scale, SACK-permitted, SACK and timestamps are read.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tcpdoctor.sources.pcap._jit import aot, njit

FRAME_MORE = 0  # stopped at the end of the complete records in the buffer
FRAME_BAD = 1  # an implausible record header at ``stop``
FRAME_OTHER_BLOCK = 2  # pcapng: a block the compiled loop does not handle at ``stop``

MAX_BLOCK = 64 * 1024 * 1024

# decode() output columns (int64 matrix ``H``), one row per packet
H_OK = 0  # 1 = a TCP segment with a complete TCP header
H_SA_HI = 1
H_SA_LO = 2
H_DA_HI = 3
H_DA_LO = 4
H_SPORT = 5
H_DPORT = 6
H_SEQ = 7
H_ACK = 8
H_FLAGS = 9
H_WIN = 10
H_IPLEN = 11  # IP packet length (header + payload) per the IP header
H_SEGLEN = 12  # TCP payload length per the IP header
H_POFF = 13  # offset of the TCP payload in the buffer
H_PCAP = 14  # captured payload bytes (<= SEGLEN when snaplen cut the packet)
H_TTL = 15
H_IPID = 16  # IPv4 identification, -1 for IPv6
H_MSS = 17  # -1 when absent
H_WSCALE = 18  # -1 when absent
H_SACKP = 19
H_TSOPT = 20
H_SACK = 21  # 1 when the segment carries SACK blocks
H_COLS = 22

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10

_V4_HI = 0
_V4_LO_PREFIX = 0xFFFF00000000


@njit(cache=True, inline="always")
def _u16(a: Any, i: int) -> Any:
    return (np.int64(a[i]) << 8) | np.int64(a[i + 1])


@njit(cache=True, inline="always")
def _u32(a: Any, i: int, big: bool) -> Any:
    if big:
        return (
            (np.int64(a[i]) << 24)
            | (np.int64(a[i + 1]) << 16)
            | (np.int64(a[i + 2]) << 8)
            | np.int64(a[i + 3])
        )
    return (
        (np.int64(a[i + 3]) << 24) | (np.int64(a[i + 2]) << 16) | (np.int64(a[i + 1]) << 8) | np.int64(a[i])
    )


@njit(cache=True)
def frame_pcap(a: Any, big: bool, divisor: int, max_record: int, snap_limit: int) -> Any:
    """Frame classic pcap records from offset 0. Returns (offset, caplen, origlen, ts, stop, status)."""
    n = len(a)
    cap_n = n // 16 + 1
    off = np.empty(cap_n, np.int64)
    cap = np.empty(cap_n, np.int64)
    orig = np.empty(cap_n, np.int64)
    ts = np.empty(cap_n, np.float64)
    pos = 0
    k = 0
    status = np.int64(FRAME_MORE)
    while pos + 16 <= n:
        sec = _u32(a, pos, big)
        frac = _u32(a, pos + 4, big)
        caplen = _u32(a, pos + 8, big)
        olen = _u32(a, pos + 12, big)
        if caplen > max_record or caplen > snap_limit or olen > 16 * 1024 * 1024 or frac >= divisor:
            status = np.int64(FRAME_BAD)
            break
        if pos + 16 + caplen > n:
            break
        off[k] = pos + 16
        cap[k] = caplen
        orig[k] = olen
        ts[k] = sec + frac / divisor
        k += 1
        pos += 16 + caplen
    return off[:k], cap[:k], orig[:k], ts[:k], pos, status


@njit(cache=True)
def pcap_resync(a: Any, start: int, big: bool, snaplen: int, max_record: int) -> int:
    """First offset >= start where two consecutive plausible record headers sit, or -1."""
    n = len(a)
    limit = max(snaplen, 65535)
    for pos in range(start, n - 16):
        caplen = _u32(a, pos + 8, big)
        olen = _u32(a, pos + 12, big)
        frac = _u32(a, pos + 4, big)
        if caplen == 0 or caplen > limit or caplen > max_record or olen < caplen or olen > 262144:
            continue
        if frac >= 1_000_000_000:
            continue
        nxt = pos + 16 + caplen
        if nxt == n:
            return pos
        if nxt + 16 > n:
            continue
        c2 = _u32(a, nxt + 8, big)
        o2 = _u32(a, nxt + 12, big)
        s1 = _u32(a, pos, big)
        s2 = _u32(a, nxt, big)
        if 0 < c2 <= limit and o2 >= c2 and o2 <= 262144 and abs(s2 - s1) < 86400:
            return pos
    return -1


@njit(cache=True)
def frame_pcapng(
    a: Any, start: int, big: bool, lt: Any, snap: Any, ups: Any, n_if: int, max_record: int
) -> Any:
    """Frame pcapng EPB/SPB/PB blocks from ``start``.

    Returns (offset, caplen, origlen, ts, linktype, stop, status); stops at any other block
    (status FRAME_OTHER_BLOCK) for the Python side to read it.
    """
    n = len(a)
    cap_n = (n - start) // 28 + 1
    off = np.empty(cap_n, np.int64)
    cap = np.empty(cap_n, np.int64)
    orig = np.empty(cap_n, np.int64)
    ts = np.empty(cap_n, np.float64)
    link = np.empty(cap_n, np.int64)
    pos = start
    k = 0
    status = np.int64(FRAME_MORE)
    while pos + 12 <= n:
        btype = _u32(a, pos, big)
        blen = _u32(a, pos + 4, big)
        if blen < 12 or blen % 4 != 0 or blen > MAX_BLOCK:
            status = np.int64(FRAME_BAD if btype != 0x0A0D0D0A else FRAME_OTHER_BLOCK)
            break
        if btype != 6 and btype != 3 and btype != 2:
            status = np.int64(FRAME_OTHER_BLOCK)
            break
        if pos + blen > n:
            break
        if _u32(a, pos + blen - 4, big) != blen:
            status = np.int64(FRAME_BAD)
            break
        if btype == 3:  # SPB
            if n_if == 0 or blen < 16:
                status = np.int64(FRAME_BAD)
                break
            olen = _u32(a, pos + 8, big)
            c = min(olen, blen - 16)
            if snap[0] > 0:
                c = min(c, snap[0])
            off[k] = pos + 12
            cap[k] = c
            orig[k] = olen
            ts[k] = 0.0
            link[k] = lt[0]
        else:  # EPB (6) or obsolete PB (2)
            if blen < 32:
                status = np.int64(FRAME_BAD)
                break
            if btype == 6:
                iface = _u32(a, pos + 8, big)
            else:
                iface = (_u32(a, pos + 8, big) >> 16) if big else (_u32(a, pos + 8, big) & 0xFFFF)
            c = _u32(a, pos + 20, big)
            olen = _u32(a, pos + 24, big)
            if iface >= n_if or c > blen - 32 or c > max_record:
                status = np.int64(FRAME_BAD)
                break
            units = (_u32(a, pos + 12, big) << 32) | _u32(a, pos + 16, big)
            u = ups[iface]
            off[k] = pos + 28
            cap[k] = c
            orig[k] = olen
            ts[k] = (units // u) + (units % u) / u
            link[k] = lt[iface]
        k += 1
        pos += blen
    return off[:k], cap[:k], orig[:k], ts[:k], link[:k], pos, status


@njit(cache=True)
def pcapng_resync(a: Any, start: int, big: bool, max_record: int) -> int:
    """First offset >= start where a plausible EPB/SPB/IDB/SHB block (trailing length matching) sits."""
    n = len(a)
    for pos in range(start, n - 12):
        btype = _u32(a, pos, big)
        if btype != 6 and btype != 3 and btype != 1 and btype != 0x0A0D0D0A and btype != 5:
            continue
        blen = _u32(a, pos + 4, big)
        if blen < 12 or blen % 4 != 0 or blen > max_record + 4096 or pos + blen > n:
            continue
        if _u32(a, pos + blen - 4, big) == blen:
            return pos
    return -1


@njit(cache=True)
def _l3(a: Any, off: int, caplen: int, linktype: int) -> Any:
    """(offset of the IP header, IP version) or (-1, 0)."""
    end = off + caplen
    if linktype == 1:  # Ethernet
        if caplen < 14:
            return -1, 0
        p = off + 12
        et = _u16(a, p)
        while et == 0x8100 or et == 0x88A8 or et == 0x9100:
            p += 4
            if p + 2 > end:
                return -1, 0
            et = _u16(a, p)
        p += 2
        if et == 0x0800:
            return p, 4
        if et == 0x86DD:
            return p, 6
        return -1, 0
    if linktype == 113:  # SLL
        if caplen < 16:
            return -1, 0
        et = _u16(a, off + 14)
        if et == 0x0800:
            return off + 16, 4
        if et == 0x86DD:
            return off + 16, 6
        return -1, 0
    if linktype == 276:  # SLL2
        if caplen < 20:
            return -1, 0
        et = _u16(a, off)
        if et == 0x0800:
            return off + 20, 4
        if et == 0x86DD:
            return off + 20, 6
        return -1, 0
    if linktype == 0 or linktype == 108:  # BSD loopback: 4-byte family
        if caplen < 4:
            return -1, 0
        fam_le = _u32(a, off, False)
        fam_be = _u32(a, off, True)
        fam = fam_be if linktype == 108 else (fam_le if fam_le < 256 else fam_be)
        if fam == 2:
            return off + 4, 4
        if fam == 24 or fam == 28 or fam == 30 or fam == 10:
            return off + 4, 6
        return -1, 0
    if linktype == 101 or linktype == 12 or linktype == 14 or linktype == 228 or linktype == 229:
        if caplen < 1:
            return -1, 0
        v = a[off] >> 4
        if v == 4 or v == 6:
            return off, v
        return -1, 0
    return -2, 0


@njit(cache=True)
def decode(a: Any, offs: Any, caps: Any, links: Any) -> Any:
    """Decode every record's headers into the int64 matrix H (columns H_*).

    Returns (H, unknown_link) where unknown_link counts records of an unsupported link type.
    """
    n = len(offs)
    H = np.zeros((n, H_COLS), np.int64)
    unknown = 0
    for i in range(n):
        off = offs[i]
        caplen = caps[i]
        end = off + caplen
        p, ver = _l3(a, off, caplen, links[i])
        if p == -2:
            unknown += 1
            continue
        if p < 0:
            continue
        if ver == 4:
            if p + 20 > end:
                continue
            ihl = (a[p] & 0x0F) * 4
            if ihl < 20 or p + ihl > end:
                continue
            if a[p + 9] != 6:
                continue
            frag = _u16(a, p + 6)
            if frag & 0x1FFF != 0:
                continue  # not the first fragment: no TCP header here
            total = _u16(a, p + 2)
            if total < ihl:
                total = end - p  # TSO / zero length as captured on the sender
            H[i, H_SA_HI] = _V4_HI
            H[i, H_SA_LO] = _V4_LO_PREFIX | _u32(a, p + 12, True)
            H[i, H_DA_HI] = _V4_HI
            H[i, H_DA_LO] = _V4_LO_PREFIX | _u32(a, p + 16, True)
            H[i, H_TTL] = a[p + 8]
            H[i, H_IPID] = _u16(a, p + 4)
            t = p + ihl
            ip_end = p + total
            H[i, H_IPLEN] = total
        else:
            if p + 40 > end:
                continue
            plen = _u16(a, p + 4)
            nh = a[p + 6]
            sa_hi = np.int64(0)
            sa_lo = np.int64(0)
            da_hi = np.int64(0)
            da_lo = np.int64(0)
            for j in range(8):
                sa_hi = (sa_hi << 8) | np.int64(a[p + 8 + j])
                sa_lo = (sa_lo << 8) | np.int64(a[p + 16 + j])
                da_hi = (da_hi << 8) | np.int64(a[p + 24 + j])
                da_lo = (da_lo << 8) | np.int64(a[p + 32 + j])
            H[i, H_SA_HI] = sa_hi
            H[i, H_SA_LO] = sa_lo
            H[i, H_DA_HI] = da_hi
            H[i, H_DA_LO] = da_lo
            H[i, H_TTL] = a[p + 7]
            H[i, H_IPID] = -1
            t = p + 40
            ip_end = t + plen if plen > 0 else end
            H[i, H_IPLEN] = ip_end - p
            ok = True
            for _hop in range(16):
                if nh == 6:
                    break
                if nh == 0 or nh == 43 or nh == 60 or nh == 135 or nh == 139 or nh == 140:
                    if t + 8 > end:
                        ok = False
                        break
                    nh2 = a[t]
                    t += (np.int64(a[t + 1]) + 1) * 8
                    nh = nh2
                elif nh == 44:  # fragment
                    if t + 8 > end:
                        ok = False
                        break
                    if _u16(a, t + 2) & 0xFFF8 != 0:
                        ok = False  # not the first fragment
                        break
                    nh = a[t]
                    t += 8
                elif nh == 51:  # AH
                    if t + 8 > end:
                        ok = False
                        break
                    nh2 = a[t]
                    t += (np.int64(a[t + 1]) + 2) * 4
                    nh = nh2
                else:
                    ok = False
                    break
            if not ok or nh != 6:
                continue
        if t + 20 > end:
            continue
        doff = (a[t + 12] >> 4) * 4
        if doff < 20:
            continue
        H[i, H_SPORT] = _u16(a, t)
        H[i, H_DPORT] = _u16(a, t + 2)
        H[i, H_SEQ] = _u32(a, t + 4, True)
        H[i, H_ACK] = _u32(a, t + 8, True)
        H[i, H_FLAGS] = a[t + 13] | ((a[t + 12] & 1) << 8)
        H[i, H_WIN] = _u16(a, t + 14)
        seglen = ip_end - t - doff
        if seglen < 0:
            seglen = 0
        H[i, H_SEGLEN] = seglen
        poff = t + doff
        H[i, H_POFF] = poff
        pc = min(end, ip_end) - poff
        H[i, H_PCAP] = pc if pc > 0 else 0
        H[i, H_MSS] = -1
        H[i, H_WSCALE] = -1
        # options (as far as captured)
        q = t + 20
        oend = min(t + doff, end)
        while q < oend:
            kind = a[q]
            if kind == 0:
                break
            if kind == 1:
                q += 1
                continue
            if q + 1 >= oend:
                break
            olen = np.int64(a[q + 1])
            if olen < 2 or q + olen > oend:
                break
            if kind == 2 and olen == 4:
                H[i, H_MSS] = _u16(a, q + 2)
            elif kind == 3 and olen == 3:
                H[i, H_WSCALE] = min(int(a[q + 2]), 14)
            elif kind == 4:
                H[i, H_SACKP] = 1
            elif kind == 5:
                H[i, H_SACK] = 1
            elif kind == 8:
                H[i, H_TSOPT] = 1
            q += olen
        H[i, H_OK] = 1
    return H, unknown


if aot is not None:  # the kernels compiled ahead of time (_jit.py)
    frame_pcap = aot.frame_pcap
    pcap_resync = aot.pcap_resync
    frame_pcapng = aot.frame_pcapng
    pcapng_resync = aot.pcapng_resync
    decode = aot.decode
