"""Logging for workflow jobs: one log file per job with versions, seed and timings, and
:class:`Progress`, one log line per interval for long work (no carriage-return redraws)."""

from __future__ import annotations

import contextlib
import logging
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["job_log", "Progress"]

#: seconds between two progress lines of one job
PROGRESS_INTERVAL_S = 30.0


@contextlib.contextmanager
def job_log(
    path: str | Path, name: str, *, threads: int | None = None, config=None, **context
) -> Iterator[logging.Logger]:
    """Send logging (and stderr: tracebacks) to ``path`` for the job's duration.

    ``context`` (seed, wildcards, settings) is written at the top of the log; ``threads`` (the
    job's cores) sets torch's intra-op threads. Every table the job writes records the job's
    name, its ``seed`` (from ``context``) and the hash of the workflow ``config`` in its metadata
    (:func:`lattherm.io.provenance`).
    """
    import torch

    import lattherm
    from lattherm.io import provenance

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
        stamp = {"job": name} if context.get("seed") is None else {"job": name, "seed": context["seed"]}
        if config is not None:
            from lattherm.config import config_hash

            stamp["config_hash"] = config_hash(config)
            logger.info("config hash = %s", stamp["config_hash"])
        t0 = time.perf_counter()
        try:
            with provenance(**stamp):
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


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
    """Progress of long work as one log line every ``interval_s`` seconds (and at the end):
    ``desc: done/total unit (pct), rate, ETA, postfix``. A job's log stays readable with
    ``tail -f`` (tqdm's redraws fill it with carriage returns).

    The tqdm subset the library uses: ``update(n)``, ``n`` (settable), ``set_postfix(**kw)``,
    ``close()``, and use as a context manager. ``enabled=False`` makes every call a no-op.
    """

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str = "it",
        *,
        enabled: bool = True,
        initial: int = 0,
        interval_s: float | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.total, self.desc, self.unit, self.enabled = int(total), desc, unit, bool(enabled)
        self.n = self._n0 = int(initial)
        self.interval_s = PROGRESS_INTERVAL_S if interval_s is None else float(interval_s)
        self._log = logger or logging.getLogger("lattherm.progress")
        self._postfix: dict = {}
        self._t0 = self._last = time.perf_counter()
        self._closed = False
        if self.enabled:
            self._emit(time.perf_counter(), "started")

    def _emit(self, now: float, tag: str = "") -> None:
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total > 0 else ""
        parts = [f"{self.desc}: {self.n}/{self.total} {self.unit}{pct}"]
        elapsed, done = now - self._t0, self.n - self._n0
        if done > 0 and elapsed > 0:
            rate = done / elapsed
            parts.append(f"{rate:.3g} {self.unit}/s")
            if self.n < self.total:
                parts.append(f"ETA {_duration((self.total - self.n) / rate)}")
        if tag:
            parts.append(f"{tag} after {_duration(elapsed)}" if tag == "done" else tag)
        parts += [f"{k}={v}" for k, v in self._postfix.items()]
        self._log.info(", ".join(parts))
        self._last = now

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        now = time.perf_counter()
        if self.enabled and now - self._last >= self.interval_s:
            self._emit(now)

    def set_postfix(self, **values) -> None:
        self._postfix = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in values.items()}

    def close(self) -> None:
        if self.enabled and not self._closed:
            self._emit(time.perf_counter(), "done")
        self._closed = True

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
