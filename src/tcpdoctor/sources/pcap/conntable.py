"""The connection table: 5-int64 keys to tracker slots, open addressing over numpy arrays.

A numba typed dict cost two hashed lookups of a tuple per packet (``in`` then ``[]``, its
``get`` returns an Optional the tracker cannot index with) and its constructor ~0.3 s of
start-up. Here a key lives in ``K[i]`` and its slot in ``V[i]`` (``EMPTY`` / ``TOMB`` for
free and deleted entries), linear probing, capacity a power of two kept at most half used
(tombstones count as used; :func:`reserve` rebuilds the arrays before a batch when needed).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tcpdoctor.sources.pcap._jit import aot, njit

EMPTY = -1
TOMB = -2
USED = 0  # U[USED]: entries not EMPTY (live + tombstones)
LIVE = 1
U_COLS = 2


def new(capacity: int = 1 << 16) -> tuple[Any, Any, Any]:
    """(K, V, U) for at least ``capacity`` live keys."""
    size = 1 << max(4, int(capacity * 2 - 1).bit_length())
    return np.zeros((size, 5), np.int64), np.full(size, EMPTY, np.int64), np.zeros(U_COLS, np.int64)


@njit(cache=True, inline="always")
def _hash(k0: int, k1: int, k2: int, k3: int, k4: int) -> Any:
    # a multiply-xorshift mix (splitmix64's finaliser) of a weighted sum; int64 arithmetic wraps
    x = k0 * np.int64(-7046029254386353131) + k1 * np.int64(-4658895280553007687)
    x += k2 * np.int64(1609587929392839161) + k3 * np.int64(-7723592293110705685) + k4
    x ^= (x >> 31) & np.int64(0x1FFFFFFFF)
    x *= np.int64(-4658895280553007687)
    x ^= (x >> 29) & np.int64(0x7FFFFFFFF)
    return x


@njit(cache=True)
def find(K: Any, V: Any, key: Any) -> Any:
    """(index of ``key`` or -1, index where it would be inserted)."""
    mask = len(V) - 1
    i = _hash(key[0], key[1], key[2], key[3], key[4]) & mask
    tomb = -1
    while True:
        v = V[i]
        if v == EMPTY:
            return -1, (tomb if tomb >= 0 else i)
        if v == TOMB:
            if tomb < 0:
                tomb = i
        elif (
            K[i, 0] == key[0]
            and K[i, 1] == key[1]
            and K[i, 2] == key[2]
            and K[i, 3] == key[3]
            and K[i, 4] == key[4]
        ):
            return i, i
        i = (i + 1) & mask


@njit(cache=True)
def put(K: Any, V: Any, U: Any, at: int, key: Any, slot: int) -> None:
    """Store ``key`` -> ``slot`` at ``at`` (the insertion index :func:`find` gave)."""
    if V[at] == EMPTY:
        U[USED] += 1
    for j in range(5):
        K[at, j] = key[j]
    V[at] = slot
    U[LIVE] += 1


@njit(cache=True, inline="always")
def remove(V: Any, U: Any, at: int) -> None:
    V[at] = TOMB
    U[LIVE] -= 1


@njit(cache=True)
def rebuild(K: Any, V: Any, K2: Any, V2: Any) -> None:
    mask = len(V2) - 1
    for i in range(len(V)):
        if V[i] >= 0:
            j = _hash(K[i, 0], K[i, 1], K[i, 2], K[i, 3], K[i, 4]) & mask
            while V2[j] != EMPTY:
                j = (j + 1) & mask
            K2[j, :] = K[i, :]
            V2[j] = V[i]


def reserve(K: Any, V: Any, U: Any, more: int) -> tuple[Any, Any, Any]:
    """The table, rebuilt (tombstones dropped, grown if needed) unless ``more`` inserts keep it
    at most half used."""
    if int(U[USED]) + more <= len(V) // 2:
        return K, V, U
    K2, V2, U2 = new(int(U[LIVE]) + more)
    if len(V2) < len(V):
        K2, V2, U2 = new(len(V) // 2)  # never shrink: a busy capture stays busy
    rebuild(K, V, K2, V2)
    U2[USED] = U2[LIVE] = U[LIVE]
    return K2, V2, U2


if aot is not None:  # the kernels compiled ahead of time (_jit.py)
    find = aot.find
    put = aot.put
    remove = aot.remove
    rebuild = aot.rebuild
