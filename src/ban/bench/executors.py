"""Where tasks run: inline (`--jobs 1`), a local process pool, or Ray (optional extra `ban[ray]`).

An executor has `slots` (how many tasks may be in flight), `submit(task) -> handle` and
`wait(handles) -> [(handle, Outcome)]` (at least one finished). The scheduler in `runner.py`
is the same for all of them.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any, Protocol

from ban.bench.plan import Task
from ban.bench.work import Context, Outcome, execute
from ban.errors import BanError

EXECUTORS = ("local", "ray")


class Executor(Protocol):
    slots: int

    def submit(self, task: Task) -> Any: ...

    def wait(self, handles: list[Any]) -> list[tuple[Any, Outcome]]: ...

    def close(self, abort: bool = False) -> None: ...


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _exit_with_parent(parent: int, every: float = 1.0) -> None:
    """Leave this worker as soon as the process that started it is gone (killed, even by SIGKILL)."""
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)


def _init_pool_worker(threads: int, parent: int) -> None:
    _init_worker(threads)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="ban-parent-watch").start()


class InlineExecutor:
    """Runs each task in this process at submit time (`--jobs 1`): simplest to debug and to interrupt."""

    slots = 1

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def submit(self, task: Task) -> Future[Outcome]:
        fut: Future[Outcome] = Future()
        fut.set_result(execute(task, self.ctx))
        return fut

    def wait(self, handles: list[Future[Outcome]]) -> list[tuple[Future[Outcome], Outcome]]:
        return [(h, h.result()) for h in handles if h.done()]

    def close(self, abort: bool = False) -> None:
        pass


class ProcessExecutor:
    """A pool of `jobs` worker processes (spawned, each with cores // jobs torch threads)."""

    def __init__(self, ctx: Context, jobs: int) -> None:
        self.ctx = ctx
        self.slots = jobs
        threads = ctx.threads or max(1, (os.cpu_count() or 1) // jobs)
        self.pool = ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_pool_worker,
            initargs=(threads, os.getpid()),
        )

    def submit(self, task: Task) -> Future[Outcome]:
        return self.pool.submit(execute, task, self.ctx)

    def wait(self, handles: list[Future[Outcome]]) -> list[tuple[Future[Outcome], Outcome]]:
        done, _ = wait_futures(handles, return_when=FIRST_COMPLETED)
        out = []
        for h in done:
            try:
                out.append((h, h.result()))
            except Exception as exc:  # noqa: BLE001 - a worker that died (killed, out of memory)
                out.append((h, Outcome("?", False, 0.0, error=f"worker failed: {type(exc).__name__}: {exc}")))
        return out

    def close(self, abort: bool = False) -> None:
        """Wait for the workers; `abort` (interrupted, terminated): stop them mid-task instead."""
        if abort:
            self.terminate_workers()
        self.pool.shutdown(wait=not abort, cancel_futures=True)

    def terminate_workers(self) -> None:
        terminate = getattr(self.pool, "terminate_workers", None)  # Python >= 3.14
        if terminate is not None:
            terminate()
            return
        processes = list((getattr(self.pool, "_processes", None) or {}).values())
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=10)


class RayExecutor:
    """Fans tasks out over Ray (`ray.init()` locally or at `address`), each asking for cpus/gpus."""

    def __init__(self, ctx: Context, address: str | None, cpus: float, gpus: float, jobs: int | None) -> None:
        try:
            import ray
        except ImportError:
            raise BanError("the ray executor needs Ray: pip install 'ban[ray]'") from None
        self.ray = ray
        self.ctx = ctx
        self._own = not ray.is_initialized()
        if self._own:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                kwargs["address"] = address
            elif jobs:
                kwargs["num_cpus"] = int(max(1, jobs * cpus))
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise BanError(f"cannot start or reach Ray ({exc}); check --ray-address") from None
        total = ray.cluster_resources().get("CPU", 1.0)
        self.slots = jobs or max(1, int(total // cpus))
        threads = ctx.threads or max(1, int(cpus))
        self._remote = ray.remote(_ray_execute).options(num_cpus=cpus, num_gpus=gpus)
        self._threads = threads
        self._pending: set[Any] = set()

    def submit(self, task: Task) -> Any:
        ref = self._remote.remote(task, self.ctx, self._threads)
        self._pending.add(ref)
        return ref

    def wait(self, handles: list[Any]) -> list[tuple[Any, Outcome]]:
        done, _ = self.ray.wait(handles, num_returns=1)
        out = []
        for h in done:
            self._pending.discard(h)
            try:
                out.append((h, self.ray.get(h)))
            except Exception as exc:  # noqa: BLE001 - a worker that died
                out.append((h, Outcome("?", False, 0.0, error=f"ray task failed: {type(exc).__name__}: {exc}")))
        return out

    def close(self, abort: bool = False) -> None:
        if abort:
            for ref in self._pending:  # a shared cluster outlives us: stop what we started on it
                try:
                    self.ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001, S110 - already finished or the cluster is gone
                    pass
        if self._own:
            self.ray.shutdown()  # ends this session's workers, running tasks included


def _ray_execute(task: Task, ctx: Context, threads: int) -> Outcome:
    _init_worker(threads)
    return execute(task, ctx)


def create_executor(
    kind: str,
    ctx: Context,
    jobs: int | None = None,
    ray_address: str | None = None,
    cpus: float = 1.0,
    gpus: float = 0.0,
) -> Executor:
    """The executor named `kind` (local or ray); `jobs` None: local runs inline, Ray fills the cluster."""
    if jobs is not None and jobs < 1:
        raise BanError(f"--jobs must be at least 1, got {jobs}")
    if kind == "local":
        return ProcessExecutor(ctx, jobs) if jobs and jobs > 1 else InlineExecutor(ctx)
    if kind == "ray":
        return RayExecutor(ctx, ray_address, cpus, gpus, jobs)
    raise BanError(f"unknown executor '{kind}'; choose one of {', '.join(EXECUTORS)}")
