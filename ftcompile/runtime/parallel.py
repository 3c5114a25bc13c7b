"""Monte-Carlo samples sharded across local worker processes or a Ray cluster (no torch).

Sample k's drift depends on (seed, k) alone (see ``drift.tensor_rng``), so shards computed anywhere, in
any order, concatenate to exactly the single-process values. Each worker rebuilds the session from the
model's bytes once (processes) or per shard (Ray tasks).
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ftcompile.data import Dataset
from ftcompile.errors import ConfigError
from ftcompile.runtime.drift import DriftModel
from ftcompile.runtime.metrics import Metric

if TYPE_CHECKING:
    from ftcompile.runtime.validate import Samples

# One set of names for validate and harden: "process" runs in this process when workers == 1.
EXECUTORS = ("process", "ray")


@dataclass(frozen=True)
class ShardJob:
    """What a worker needs to score samples ``first .. first+count-1``: picklable, torch-free."""

    model: bytes
    session: dict
    data: Dataset
    drift: DriftModel
    seed: int
    batch_size: int
    metric: Metric
    threads: int

    def run(self, first: int, count: int, session=None) -> "Samples":
        import onnx

        from ftcompile.runtime.session import DriftSession
        from ftcompile.runtime.validate import run_samples

        if session is None:
            session = DriftSession(onnx.load_from_string(self.model), threads=self.threads, **self.session)
        return run_samples(session, self.data, self.drift, samples=count, seed=self.seed,
                           batch_size=self.batch_size, metric=self.metric, first=first)


def shards(samples: int, pieces: int) -> list[tuple[int, int]]:
    """``(first, count)`` ranges covering ``0 .. samples-1`` in about ``pieces`` equal parts."""
    pieces = max(1, min(samples, pieces))
    bounds = [round(i * samples / pieces) for i in range(pieces + 1)]
    return [(a, b - a) for a, b in zip(bounds, bounds[1:]) if b > a]


def connect_ray(address: str | None = None):
    """The ``ray`` module, connected: to ``address`` (``auto``, ``ray://host:port``) or a local instance."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray; install it with pip install 'ftcompile[ray]', or use "
                          "--executor process.") from None
    if not ray.is_initialized():
        opts = dict(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        try:
            ray.init(address=address, **opts) if address else ray.init(**opts)
        except Exception as exc:
            raise ConfigError(f"cannot connect to Ray at {address or 'a new local instance'} ({exc}); check "
                              "--ray-address (auto, ray://host:10001) and that the cluster is up.") from None
    return ray


def exit_with_parent() -> None:
    """In a worker process: exit when the parent dies (``kill -9`` gives it no chance to stop its pool)."""
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="ftcompile-parent-watch").start()


_SESSION = None
_JOB: ShardJob | None = None


def _init_process(job: ShardJob) -> None:
    global _SESSION, _JOB
    import onnx

    exit_with_parent()
    from ftcompile.runtime.session import DriftSession

    _JOB = job
    _SESSION = DriftSession(onnx.load_from_string(job.model), threads=job.threads, **job.session)


def _process_shard(first: int, count: int) -> tuple[int, "Samples"]:
    return first, _JOB.run(first, count, _SESSION)


def sharded_sample_metrics(job: ShardJob, samples: int, *, workers: int, executor: str = "process",
                           ray_address: str | None = None,
                           on_sample: Callable[[int, float], None] | None = None) -> "Samples":
    """Samples ``0 .. samples-1``, computed by ``workers`` processes or Ray tasks, merged in order."""
    from ftcompile.runtime.validate import Samples

    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor!r} is unknown; use one of {', '.join(EXECUTORS)}.")
    ranges = shards(samples, workers * 4)  # several shards per worker: progress, and slow workers even out
    results: dict[int, Samples] = {}

    def collect(first: int, part: Samples) -> None:
        results[first] = part
        if on_sample is not None:
            for i, v in enumerate(part.values):
                on_sample(first + i, v)

    if executor == "ray":
        ray = connect_ray(ray_address)
        job_ref = ray.put(job)
        remote = ray.remote(num_cpus=1, max_retries=1)(lambda j, a, n: (a, j.run(a, n)))
        pending = [remote.remote(job_ref, a, n) for a, n in ranges]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            collect(*ray.get(ready[0]))
    else:
        import multiprocessing

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_process, initargs=(job,)) as pool:
            for future in as_completed([pool.submit(_process_shard, a, n) for a, n in ranges]):
                collect(*future.result())
    merged = Samples([], None)
    for first in sorted(results):
        merged = results[first] if not merged.values else merged.merged(results[first])
    return merged


def shard_job(model_bytes: bytes, data: Dataset, drift: DriftModel, *, seed: int, batch_size: int,
              metric: Metric, workers: int, session_kwargs: dict) -> ShardJob:
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    return ShardJob(model_bytes, session_kwargs, data, drift, seed, batch_size, metric, threads)
