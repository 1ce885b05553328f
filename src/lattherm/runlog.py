"""Logging for workflow jobs: one log file per job with versions, seed and timings."""

from __future__ import annotations

import contextlib
import logging
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["job_log"]


@contextlib.contextmanager
def job_log(path: str | Path, name: str, *, threads: int | None = None, **context) -> Iterator[logging.Logger]:
    """Send logging (and stderr: tracebacks, progress bars) to ``path`` for the job's duration.

    ``context`` (seed, wildcards, settings) is written at the top of the log; ``threads`` (the
    job's cores) sets torch's intra-op threads.
    """
    import torch

    import lattherm

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as fh, contextlib.redirect_stderr(fh):
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        old_level = root.level
        root.setLevel(logging.INFO)
        logger = logging.getLogger(f"lattherm.{name}")
        logger.info(
            "lattherm %s, python %s, torch %s, host %s",
            lattherm.__version__,
            platform.python_version(),
            torch.__version__,
            platform.node(),
        )
        if threads is not None:
            torch.set_num_threads(max(1, int(threads)))
            logger.info("torch threads = %d", torch.get_num_threads())
        for k, v in context.items():
            logger.info("%s = %s", k, v)
        t0 = time.perf_counter()
        try:
            yield logger
        except BaseException:
            logger.exception("job %s failed after %.1f s", name, time.perf_counter() - t0)
            print(f"lattherm job {name} failed; see {path}", file=sys.__stderr__)
            raise
        else:
            logger.info("job %s done in %.1f s", name, time.perf_counter() - t0)
        finally:
            root.removeHandler(handler)
            root.setLevel(old_level)
