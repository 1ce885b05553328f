"""Every seed the project derives, in one place: a workflow job's from the config seed and the job's
identity (:func:`job_seed`), a training process's sampling stream (:func:`sampling_seed`), and the
library's streams of a seed and integer keys (a replica, a condition, a chain block:
:func:`derived_seed`)."""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["derived_seed", "job_seed", "sampling_seed"]


def derived_seed(seed: int, *keys: int) -> int:
    """A reproducible non-negative 63-bit seed for the stream ``keys`` of ``seed``."""
    ss = np.random.SeedSequence([int(seed), *map(int, keys)])
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def job_seed(seed: int, *keys: str) -> int:
    """A per-job seed derived from the config seed and the job's identity (rule, system, size).

    Jobs get distinct, reproducible streams; the same config seed gives the same seeds.
    """
    digest = hashlib.sha256("/".join([str(seed), *map(str, keys)]).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def sampling_seed(seed: int, rank: int = 0) -> int:
    """Seed of a training process's sampling generator (``seed``: the training's): ``seed + 2`` for
    rank 0 (the single-process seed), a hash of ``(seed, rank)`` below 2**63 for the others."""
    if rank == 0:
        return int(seed) + 2
    digest = hashlib.sha256(f"lattherm-sampling/{int(seed)}/{int(rank)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
