"""Where trials run: in this process, in N local worker processes, or as Ray tasks.

The interface is three calls, small enough for a Ray executor to implement later:
``submit(task)``, ``next_done() -> Done`` (blocks for any one finished trial) and ``close()``;
``slots`` says how many trials may be in flight, which is the q of the controller's q-batch.
A Ray cluster is one more implementation of the same three calls.
A trial is a picklable callable ``runner(task) -> Score`` built once and shipped to each worker.
"""
from __future__ import annotations

import pickle
import signal
import time
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import Any, Callable, Protocol

from ftcompile.resources import keep_large_allocations


@dataclass(frozen=True)
class TrialTask:
    trial: int
    rates: tuple            # one rate per dropout site
    seed: int
    point: tuple = ()       # the controller's point (one value per group of sites)
    origin: str = ""        # design, bo, random, grid or retry
    train_sigma: float | None = None  # train under this lognormal sigma (the grid's level, or the recipe's)
    lr_scale: float = 1.0   # the recipe's learning rate relative to --lr
    fidelity: float = 1.0   # the share of the trial subset to fine-tune on (fidelity.py)


@dataclass(frozen=True)
class Done:
    """A finished attempt: ``result`` is the runner's return value, or the exception that ended it."""

    task: TrialTask
    result: Any
    seconds: float

    @property
    def failed(self) -> bool:
        return isinstance(self.result, BaseException)


class Executor(Protocol):
    slots: int

    def submit(self, task: TrialTask) -> None: ...

    def next_done(self) -> Done: ...

    def close(self) -> None: ...


def retried(executor: Executor, done: Done, attempts: Counter, retries: int) -> TrialTask | None:
    """Submit a failed attempt once more (origin "retry") while its trial has retries left, and return the new
    task; None when ``done`` is final (it succeeded, or failed its last attempt). ``attempts`` counts per trial."""
    if not done.failed or attempts[done.task.trial] >= retries:
        return None
    attempts[done.task.trial] += 1
    task = replace(done.task, origin="retry")
    executor.submit(task)
    return task


class LocalExecutor:
    """Runs each trial when asked for a result, in this process, with torch's default threads."""

    slots = 1

    def __init__(self, runner: Callable[[TrialTask], Any]):
        self.runner = runner
        self.queue: deque[TrialTask] = deque()

    def submit(self, task: TrialTask) -> None:
        self.queue.append(task)

    def next_done(self) -> Done:
        task = self.queue.popleft()
        start = time.perf_counter()
        try:
            result = self.runner(task)
        except Exception as exc:  # a failed trial is recorded, the search goes on
            result = exc
        return Done(task, result, time.perf_counter() - start)

    def close(self) -> None:
        self.queue.clear()


_RUNNER: Callable | None = None



def _init_worker(payload: bytes, threads: int) -> None:
    global _RUNNER
    import torch

    from ftcompile.runtime.parallel import exit_with_parent

    exit_with_parent()
    # the parent owns Ctrl-C: it stops the pool and keeps the journal consistent
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)  # N one-thread workers; oversubscribed cores run ~30x slower
    keep_large_allocations()
    _RUNNER = pickle.loads(payload)


def _run(task: TrialTask) -> tuple[Any, float]:
    start = time.perf_counter()
    result = _RUNNER(task)
    return result, time.perf_counter() - start


class ProcessExecutor:
    """``workers`` spawned processes, each with one torch thread and its own copy of the runner.

    A worker that dies (killed, out of memory) breaks the pool: it is rebuilt and the trials that were in
    flight come back from ``next_done`` as failed attempts, for the caller to retry or record.
    """

    def __init__(self, runner: Callable[[TrialTask], Any], workers: int, *, threads: int = 1):
        import multiprocessing

        self.slots = workers
        self._args = (pickle.dumps(runner), threads)
        self._ctx = multiprocessing.get_context("spawn")  # fork after torch's thread pool starts can hang
        self._pool = self._new_pool()
        self._futures: dict[Future, tuple[TrialTask, float]] = {}
        self._broken: deque[Done] = deque()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.slots, mp_context=self._ctx, initializer=_init_worker, initargs=self._args)

    def submit(self, task: TrialTask) -> None:
        try:
            future = self._pool.submit(_run, task)
        except BrokenProcessPool:
            self._restart()
            future = self._pool.submit(_run, task)
        self._futures[future] = (task, time.perf_counter())

    def next_done(self) -> Done:
        if self._broken:
            return self._broken.popleft()
        done, _ = wait(self._futures, return_when=FIRST_COMPLETED)
        future = done.pop()
        task, start = self._futures.pop(future)
        try:
            result, seconds = future.result()
        except BrokenProcessPool as exc:
            # every trial in flight died with the pool; hand them back one by one as failures
            self._broken.extend(Done(t, exc, time.perf_counter() - s) for t, s in self._futures.values())
            self._futures.clear()
            self._restart()
            return Done(task, RuntimeError(f"worker process died: {exc}"), time.perf_counter() - start)
        except Exception as exc:
            return Done(task, exc, time.perf_counter() - start)
        return Done(task, result, seconds)

    def _restart(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool()

    def close(self) -> None:
        busy = [f for f in self._futures if not f.cancel()]
        if busy:  # workers ignore SIGINT; end the busy ones so that Ctrl-C returns at once
            for process in list((getattr(self._pool, "_processes", None) or {}).values()):
                process.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._futures.clear()


def _ray_trial(runner, task: TrialTask, threads: int) -> tuple[Any, float]:
    import torch

    torch.set_num_threads(threads)
    keep_large_allocations()
    start = time.perf_counter()
    return runner(task), time.perf_counter() - start


class RayExecutor:
    """Trials as Ray tasks (one CPU, or one GPU, each) on a local instance or a cluster.

    The runner goes to the object store once. Results stream back as they finish, so a slow trial holds
    only its own slot. Ray's own retries are off: the search retries a failed trial once, then records it.
    """

    def __init__(self, runner: Callable[[TrialTask], Any], workers: int, *, address: str | None = None,
                 cpus: int = 1, gpus: float = 0):
        from ftcompile.runtime.parallel import connect_ray

        self.ray = connect_ray(address)
        self.slots = workers
        self._runner = self.ray.put(runner)
        self._threads = cpus
        self._remote = self.ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(_ray_trial)
        self._refs: dict = {}

    def submit(self, task: TrialTask) -> None:
        self._refs[self._remote.remote(self._runner, task, self._threads)] = (task, time.perf_counter())

    def next_done(self) -> Done:
        (ref,), _ = self.ray.wait(list(self._refs), num_returns=1)
        task, start = self._refs.pop(ref)
        try:
            result, seconds = self.ray.get(ref)
        except Exception as exc:  # RayTaskError (the trial raised), WorkerCrashedError (the worker died)
            return Done(task, exc, time.perf_counter() - start)
        return Done(task, result, seconds)

    def close(self) -> None:
        for ref in self._refs:
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # already finished or its worker gone: nothing to stop
                pass
        self._refs.clear()


def make_executor(kind: str, runner: Callable[[TrialTask], Any], workers: int, *, ray_address: str | None = None,
                  gpus: float = 0) -> Executor:
    """``kind`` "ray": Ray tasks (even one); otherwise N > 1 workers are local processes, one is this process."""
    if kind == "ray":
        return RayExecutor(runner, workers, address=ray_address, gpus=gpus)
    return ProcessExecutor(runner, workers) if workers > 1 else LocalExecutor(runner)
