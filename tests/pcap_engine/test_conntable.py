"""The open-addressing connection table behaves as a dict under inserts, deletes and rebuilds."""

from __future__ import annotations

import random

import numpy as np

from tcpdoctor.sources.pcap import conntable


def test_table_matches_a_dict_through_churn_and_rebuilds() -> None:
    rng = random.Random(5)
    K, V, U = conntable.new(16)
    ref: dict[tuple[int, ...], int] = {}
    sizes = {len(V)}
    for step in range(20_000):
        if step % 500 == 0:
            K, V, U = conntable.reserve(K, V, U, 500)
            sizes.add(len(V))
        # keys crowd into few values so that probes collide; negative values as IPv6 halves are
        key = (rng.randint(-3, 3), rng.randint(0, 50), 0, rng.choice([0, -(2**63)]), rng.randint(0, 40))
        arr = np.array(key, np.int64)
        found, at = conntable.find(K, V, arr)
        if key in ref:
            assert found >= 0 and V[found] == ref[key]
            if rng.random() < 0.6:
                conntable.remove(V, U, found)
                del ref[key]
        else:
            assert found == -1
            conntable.put(K, V, U, at, arr, step)
            ref[key] = step
        assert U[conntable.LIVE] == len(ref)
    assert len(sizes) > 1  # it grew
    live = {tuple(K[i].tolist()): int(V[i]) for i in range(len(V)) if V[i] >= 0}
    assert live == ref
