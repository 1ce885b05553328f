"""Seeds derived from a seed and integer keys (a replica, a condition, a chain block): one spelling
for the library. Workflow jobs derive theirs from the config seed with
:func:`lattherm.config.job_seed`."""

from __future__ import annotations

import numpy as np

__all__ = ["derived_seed"]


def derived_seed(seed: int, *keys: int) -> int:
    """A reproducible non-negative 63-bit seed for the stream ``keys`` of ``seed``."""
    ss = np.random.SeedSequence([int(seed), *map(int, keys)])
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))
