"""Streaming reader of pcap and pcapng files: record framing, batch by batch, in bounded memory.

The reader never builds per-packet Python objects: it reads the file in chunks of a few
MB and hands out :class:`Batch` values (the chunk as a numpy byte array and, per record,
the offset of the link-layer frame, its captured and original length, timestamp and link
type), framed by compiled loops (:mod:`tcpdoctor.sources.pcap.fastpath`).

Formats: classic pcap in both byte orders, microsecond and nanosecond magic; pcapng with
SHB (both byte orders, several sections), IDB (per-interface link type, snaplen and
``if_tsresol``), EPB, SPB and the obsolete Packet Block; other blocks are skipped.
``-`` reads standard input.

Bad input never raises past :func:`open_capture` (which raises :class:`InputError` only when
nothing can be read: wrong magic, empty file): truncated records, absurd lengths and garbage
in the middle become :class:`ReadProblem` values with the byte offset and frame number, and
the reader resynchronises on the next plausible record.
"""

from __future__ import annotations

import os
import stat
import struct
import sys
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from tcpdoctor.evidence.pcap import ReadProblem
from tcpdoctor.model import InputError
from tcpdoctor.sources.pcap import fastpath

CHUNK = 8 * 1024 * 1024
MAX_RECORD = 256 * 1024  # larger records than this are "absurd" (tcpdump's MAXIMUM_SNAPLEN is 262144)
MAX_PROBLEMS = 50

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D

LINKTYPE_NAMES = {
    0: "BSD loopback (NULL)",
    1: "Ethernet",
    12: "raw IP",
    14: "raw IP",
    101: "raw IP",
    108: "OpenBSD loopback",
    113: "Linux cooked (SLL)",
    228: "raw IPv4",
    229: "raw IPv6",
    276: "Linux cooked v2 (SLL2)",
}
SUPPORTED_LINKTYPES = frozenset(LINKTYPE_NAMES)


@dataclass
class Batch:
    """Records of one chunk: ``buf[offset[i] : offset[i] + caplen[i]]`` is the frame of record i."""

    buf: npt.NDArray[np.uint8]
    offset: npt.NDArray[np.int64]
    caplen: npt.NDArray[np.int64]
    origlen: npt.NDArray[np.int64]
    ts: npt.NDArray[np.float64]
    linktype: npt.NDArray[np.int64]
    first_frame: int  # frame number of record 0 (1-based)
    file_offset: int  # byte offset of buf[0] in the file

    def __len__(self) -> int:
        return len(self.offset)


@dataclass
class _Interface:
    linktype: int
    snaplen: int
    units_per_second: int = 1_000_000  # pcapng if_tsresol (default 10^-6)


@dataclass
class CaptureReader:
    """Iterate :meth:`batches`; then read :attr:`problems`, :attr:`bytes_read`, :attr:`frames`."""

    stream: BinaryIO
    name: str
    size: int | None  # file size when known (for the progress bar)
    problems: list[ReadProblem] = field(default_factory=list)
    problem_count: int = 0
    frames: int = 0
    bytes_read: int = 0
    format: str = "pcap"
    unknown_linktypes: dict[int, int] = field(default_factory=dict)

    # set by open_capture
    _head: bytes = b""
    _big_endian: bool = False
    _nanos: bool = False
    _interfaces: list[_Interface] = field(default_factory=list)

    def problem(self, message: str, *, offset: int | None = None, frame: int | None = None) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(ReadProblem(message, offset, frame))

    def payload_fd(self) -> int | None:
        """A descriptor to read bytes again at a file offset (``os.pread``): regular files only."""
        if self.name == "<stdin>":
            return None
        try:
            fd = self.stream.fileno()
            return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
        except (OSError, ValueError, AttributeError):
            return None

    # -- chunks --------------------------------------------------------------------------------
    def _chunks(self, start: int) -> Generator[tuple[bytes | bytearray, int, bool], int, None]:
        """Generator driven by ``send(consumed)``: yields (data, file offset of data[0], at_eof).

        ``data`` begins with the bytes the caller has not consumed yet; when it consumed
        nothing, more is read before the next yield (a block larger than a chunk). The file is
        read straight behind the unconsumed tail (``readinto``): one copy per byte, not two.
        """
        pending: bytes | bytearray = self._head[start:]
        self._head = b""
        base = start
        eof = False
        want = CHUNK
        while True:
            if not eof and len(pending) < want:
                grown = bytearray(want)
                have = len(pending)
                grown[:have] = pending
                view = memoryview(grown)
                while have < want:
                    got = self.stream.readinto(view[have:])  # type: ignore[attr-defined]
                    if not got:
                        eof = True
                        break
                    have += got
                view.release()
                del grown[have:]
                pending = grown
            if not pending:
                return
            consumed = yield pending, base, eof
            self.bytes_read = base + consumed
            if consumed == 0:
                if eof:
                    return
                want = len(pending) + CHUNK
                continue
            want = CHUNK
            pending = pending[consumed:]
            base += consumed

    def batches(self) -> Iterator[Batch]:
        if self.format == "pcap":
            yield from self._pcap_batches()
        else:
            yield from self._pcapng_batches()

    # -- classic pcap --------------------------------------------------------------------------
    def _pcap_batches(self) -> Iterator[Batch]:
        iface = self._interfaces[0]
        gen = self._chunks(24)
        try:
            data, base, eof = next(gen)
        except StopIteration:
            return
        divisor = 1_000_000_000 if self._nanos else 1_000_000
        while True:
            arr = np.frombuffer(data, dtype=np.uint8)
            off, cap, orig, ts, stop, status = fastpath.frame_pcap(
                arr, self._big_endian, divisor, MAX_RECORD, max(iface.snaplen, MAX_RECORD)
            )
            n = len(off)
            if n:
                yield Batch(
                    arr,
                    off,
                    cap,
                    orig,
                    ts,
                    np.full(n, iface.linktype, dtype=np.int64),
                    self.frames + 1,
                    base,
                )
                self.frames += n
            consumed = stop
            if status == fastpath.FRAME_BAD:
                resync = _pcap_resync(arr, stop + 1, self._big_endian, iface.snaplen)
                if resync < 0 and not eof:
                    resync = max(stop + 1, len(data) - 64 * 1024)  # look again with more data
                    self.problem(
                        "garbage or an absurd record length; skipping ahead", offset=base + stop, frame=None
                    )
                elif resync < 0:
                    self.problem(
                        f"garbage or an absurd record length after frame {self.frames}; "
                        f"the remaining {len(data) - stop} bytes were not readable",
                        offset=base + stop,
                        frame=self.frames + 1,
                    )
                    consumed = len(data)
                else:
                    self.problem(
                        f"garbage or an absurd record length after frame {self.frames}: "
                        f"skipped {resync - stop} bytes",
                        offset=base + stop,
                        frame=self.frames + 1,
                    )
                consumed = max(consumed, resync if resync > 0 else consumed)
            elif eof and stop < len(data):
                self._truncated(data, stop, base, 16)
                consumed = len(data)
            try:
                data, base, eof = gen.send(consumed)
            except StopIteration:
                return

    def _truncated(self, data: bytes | bytearray, stop: int, base: int, header: int) -> None:
        left = len(data) - stop
        self.problem(
            f"file truncated: the last record (frame {self.frames + 1}) has only {left} of its bytes"
            if left >= header
            else f"file truncated: {left} stray bytes after frame {self.frames}",
            offset=base + stop,
            frame=self.frames + 1,
        )

    # -- pcapng --------------------------------------------------------------------------------
    def _pcapng_batches(self) -> Iterator[Batch]:
        gen = self._chunks(0)
        try:
            data, base, eof = next(gen)
        except StopIteration:
            return
        while True:
            arr = np.frombuffer(data, dtype=np.uint8)
            pos = 0
            # blocks the compiled loop does not handle: SHB, IDB, others (rare)
            n_if = len(self._interfaces)
            lt = np.array([i.linktype for i in self._interfaces] or [0], dtype=np.int64)
            snap = np.array([i.snaplen for i in self._interfaces] or [0], dtype=np.int64)
            ups = np.array([i.units_per_second for i in self._interfaces] or [1], dtype=np.int64)
            off, cap, orig, ts, link, stop, status = fastpath.frame_pcapng(
                arr, pos, self._big_endian, lt, snap, ups, n_if, MAX_RECORD
            )
            n = len(off)
            if n:
                yield Batch(arr, off, cap, orig, ts, link, self.frames + 1, base)
                self.frames += n
            consumed = stop
            if status == fastpath.FRAME_OTHER_BLOCK:
                consumed = self._pcapng_block(data, stop, base)
                if consumed == stop and eof:
                    self._truncated(data, stop, base, 12)
                    consumed = len(data)
            elif status == fastpath.FRAME_BAD:
                resync = _pcapng_resync(arr, stop + 4, self._big_endian)
                if resync < 0:
                    if eof:
                        self.problem(
                            f"bad pcapng block after frame {self.frames}; the remaining "
                            f"{len(data) - stop} bytes were not readable",
                            offset=base + stop,
                            frame=self.frames + 1,
                        )
                        consumed = len(data)
                    else:
                        self.problem("bad pcapng block; skipping ahead", offset=base + stop)
                        consumed = max(stop + 4, len(data) - 64 * 1024)
                else:
                    self.problem(
                        f"bad pcapng block after frame {self.frames}: skipped {resync - stop} bytes",
                        offset=base + stop,
                        frame=self.frames + 1,
                    )
                    consumed = resync
            elif eof and stop < len(data):
                self._truncated(data, stop, base, 12)
                consumed = len(data)
            try:
                data, base, eof = gen.send(consumed)
            except StopIteration:
                return

    def _pcapng_block(self, data: bytes | bytearray, pos: int, base: int) -> int:
        """Handle one SHB/IDB/other block at ``pos``; returns the position after it."""
        if len(data) - pos < 12:
            return pos  # need more data (or truncated: handled by the caller at EOF)
        raw_type = struct.unpack_from("<I", data, pos)[0]
        if raw_type == PCAPNG_SHB:
            bom = struct.unpack_from("<I", data, pos + 8)[0]
            self._big_endian = bom != PCAPNG_BOM
            self._interfaces = []
        e = ">" if self._big_endian else "<"
        btype, blen = struct.unpack_from(e + "II", data, pos)
        if blen < 12 or blen % 4 or blen > 64 * 1024 * 1024:
            self.problem(f"pcapng block of type {btype:#x} with bad length {blen}", offset=base + pos)
            nxt = _pcapng_resync(np.frombuffer(data, dtype=np.uint8), pos + 4, self._big_endian)
            return nxt if nxt > 0 else len(data)
        if len(data) - pos < blen:
            return pos
        body = bytes(data[pos + 8 : pos + blen - 4])
        if btype == 1 and len(body) >= 8:  # IDB
            linktype, _, snaplen = struct.unpack_from(e + "HHI", body, 0)
            iface = _Interface(linktype, snaplen or MAX_RECORD)
            self._read_idb_options(body[8:], e, iface)
            if linktype not in SUPPORTED_LINKTYPES:
                self.problem(
                    f"interface {len(self._interfaces)} has unsupported link type {linktype}; "
                    "its packets are skipped",
                    offset=base + pos,
                )
            self._interfaces.append(iface)
        return pos + blen

    @staticmethod
    def _read_idb_options(opts: bytes, e: str, iface: _Interface) -> None:
        i = 0
        while i + 4 <= len(opts):
            code, length = struct.unpack_from(e + "HH", opts, i)
            if code == 0:
                break
            if code == 9 and length >= 1 and i + 5 <= len(opts):
                v = opts[i + 4]
                exp = v & 0x7F
                if exp <= 30 or not v & 0x80:
                    iface.units_per_second = (2**exp) if v & 0x80 else 10 ** min(exp, 18)
            i += 4 + ((length + 3) & ~3)


def _pcap_resync(arr: npt.NDArray[np.uint8], start: int, big_endian: bool, snaplen: int) -> int:
    """The next offset at which two consecutive plausible pcap record headers sit, or -1."""
    return int(fastpath.pcap_resync(arr, start, big_endian, max(snaplen, 1), MAX_RECORD))


def _pcapng_resync(arr: npt.NDArray[np.uint8], start: int, big_endian: bool) -> int:
    return int(fastpath.pcapng_resync(arr, start, big_endian, MAX_RECORD))


def open_capture(path: str) -> CaptureReader:
    """Open a capture (``-`` = stdin) and read its file header.

    Raises :class:`InputError` when the file cannot be opened or is not a capture at all.
    """
    stream: BinaryIO
    size: int | None = None
    if path == "-":
        stream = sys.stdin.buffer
        name = "<stdin>"
    else:
        p = Path(path)
        try:
            stream = p.open("rb")
            size = p.stat().st_size
        except OSError as exc:
            raise InputError(f"{path}: {exc.strerror or exc}") from None
        name = path
    head = stream.read(CHUNK)
    if len(head) < 4:
        raise InputError(f"{name}: byte offset 0: empty or too short to be a capture ({len(head)} bytes)")
    reader = CaptureReader(stream, name, size)
    reader._head = head
    magic_le = struct.unpack_from("<I", head, 0)[0]
    magic_be = struct.unpack_from(">I", head, 0)[0]
    if magic_le == PCAPNG_SHB:
        if len(head) < 28:
            raise InputError(f"{name}: byte offset 0: truncated pcapng section header")
        reader.format = "pcapng"
        return reader
    for magic, big in ((magic_le, False), (magic_be, True)):
        if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            if len(head) < 24:
                raise InputError(f"{name}: byte offset 0: truncated pcap file header")
            e = ">" if big else "<"
            snaplen, network = struct.unpack_from(e + "II", head, 16)
            linktype = network & 0x0FFFFFFF
            reader._big_endian = big
            reader._nanos = magic == PCAP_MAGIC_NS
            reader._interfaces = [_Interface(linktype, snaplen or MAX_RECORD)]
            if linktype not in SUPPORTED_LINKTYPES:
                reader.problem(f"unsupported link type {linktype}; packets cannot be decoded", offset=20)
            return reader
    raise InputError(
        f"{name}: byte offset 0: not a pcap or pcapng file (magic {head[:4].hex()}; "
        "expected a1b2c3d4, a1b23c4d or 0a0d0d0a)"
    )
