"""Where a sweep's trials run: in this process, on local worker processes, or on a Ray cluster.

An `Executor` maps a picklable function over jobs and returns the results in job order. Large
objects every job needs (the model, shared statistics) go in `shared`, keyword arguments of the
function: a Ray executor puts them in the object store once instead of once per job. A job whose
worker dies (a crash in native code) does not stop the others: `on_error(job, exc)` makes its
result.

>>> InProcess().run(pow, [2, 3], shared={"exp": 2}, on_error=lambda job, exc: None)
[4, 9]
"""

from __future__ import annotations

import concurrent.futures
import importlib
import multiprocessing
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from onnxprune.errors import UsageError

OnError = Callable[[Any, BaseException], Any]


class Executor(ABC):
    """Runs `fn(job, **shared)` for every job; `workers` is how many run at once."""

    workers: int = 1
    remote: bool = False
    """True when jobs may run on other machines (files named by path may not be there)."""

    @abstractmethod
    def run(
        self, fn: Callable[..., Any], jobs: Sequence[Any], *, shared: Mapping[str, Any], on_error: OnError
    ) -> list[Any]:
        """The results of `fn(job, **shared)`, in job order; `on_error(job, exc)` for a job that
        raised out of `fn` or whose worker died."""

    @abstractmethod
    def describe(self) -> str:
        """How the jobs ran, for the report (`local processes x2`)."""


class InProcess(Executor):
    """One job after the other, in this process (tests, debugging)."""

    workers = 1

    def run(
        self, fn: Callable[..., Any], jobs: Sequence[Any], *, shared: Mapping[str, Any], on_error: OnError
    ) -> list[Any]:
        results = []
        for job in jobs:
            try:
                results.append(fn(job, **shared))
            except Exception as exc:
                results.append(on_error(job, exc))
        return results

    def describe(self) -> str:
        return "in process"


@dataclass
class LocalProcesses(Executor):
    """`workers` spawned processes on this machine (spawn, not fork: ONNX Runtime's thread pools
    do not survive a fork). `fn`, the jobs and `shared` must pickle."""

    workers: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise UsageError(f"workers must be an integer >= 1, got {self.workers!r}")

    def run(
        self, fn: Callable[..., Any], jobs: Sequence[Any], *, shared: Mapping[str, Any], on_error: OnError
    ) -> list[Any]:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=context) as pool:
            futures = [pool.submit(fn, job, **shared) for job in jobs]
            return [_result(future, job, on_error) for future, job in zip(futures, jobs, strict=True)]

    def describe(self) -> str:
        return f"local processes x{self.workers}"


def _result(future: concurrent.futures.Future, job: Any, on_error: OnError) -> Any:
    try:
        return future.result()
    except Exception as exc:  # BrokenProcessPool when a worker died, or fn raised
        return on_error(job, exc)


@dataclass
class RayExecutor(Executor):
    """Jobs as Ray tasks of one CPU each. `address` is `"auto"` (the cluster this machine is part
    of), `"local"` (start a Ray instance here with `workers` CPUs) or a cluster address
    (`ray://host:10001`); an already initialised Ray is used as it is. `workers` is informative on
    a cluster (Ray schedules by free CPUs). Needs the extra `onnxprune[ray]`."""

    address: str = "auto"
    workers: int = 2
    remote: bool = True

    def _ray(self) -> Any:
        try:
            ray = importlib.import_module("ray")
        except ImportError as exc:
            raise UsageError("--ray needs Ray: pip install 'onnxprune[ray]'") from exc
        if not ray.is_initialized():
            if self.address == "local":
                ray.init(num_cpus=self.workers, include_dashboard=False)
            else:
                ray.init(address=self.address, include_dashboard=False)
        return ray

    def run(
        self, fn: Callable[..., Any], jobs: Sequence[Any], *, shared: Mapping[str, Any], on_error: OnError
    ) -> list[Any]:
        ray = self._ray()
        refs = {key: ray.put(value) for key, value in shared.items()}  # once, not once per job
        task = ray.remote(num_cpus=1, max_retries=0)(fn)
        pending = [task.remote(job, **refs) for job in jobs]
        results = []
        for ref, job in zip(pending, jobs, strict=True):
            try:
                results.append(ray.get(ref))
            except Exception as exc:  # RayTaskError, WorkerCrashedError
                results.append(on_error(job, exc))
        return results

    def describe(self) -> str:
        return f"ray ({self.address})"


__all__ = ["Executor", "InProcess", "LocalProcesses", "RayExecutor"]
