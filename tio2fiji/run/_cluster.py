"""The cluster side of a run over many images: Dask (``dask.distributed``) workers.

:func:`open_client` starts a local cluster (``--workers N``: N worker processes of one Dask thread
each, ``cores // N`` torch threads each, so that workers × threads = cores) or connects to an
existing scheduler (``--scheduler ADDRESS`` or a scheduler file, e.g. one that ``dask-jobqueue``
started on SLURM/PBS, or ``dask scheduler`` + ``dask worker``); :func:`start_client` does it in a
background thread while the caller prepares its work. A local cluster's workers are forked from a
server that imported the caller's modules once (``preload``), where the platform has a fork server.
:func:`share` gives every worker, also one that joins or restarts later, one large object once (a
network's graph). :func:`run_tasks` submits one task per item and yields each outcome as it
completes. On a worker, :func:`shared` is what :func:`share` gave it, :func:`worker_cache` keeps
what is expensive to build (the network, keyed by its file and device) for the worker's lifetime,
and :func:`worker_device` is the device this worker was given (one GPU per worker, in turn).

A worker that dies (killed, out of memory) loses its task to Dask's scheduler, which runs it again
on another worker; a task whose worker died more than :data:`ALLOWED_FAILURES` times (a local
cluster; a running scheduler has its own ``distributed.scheduler.allowed-failures``, Dask's default
3) is given up (:class:`distributed.KilledWorker`) and comes back as that exception, so that the
caller records the item as failed and the others finish.

This module knows nothing of images; :mod:`tio2fiji.run._analyze` passes its own task function.
"""

from __future__ import annotations

import logging
import socket
import uuid
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError
from ..models.device import available_cores as cores
from ..models.device import torch_threads

__all__ = ["cores", "open_client", "start_client", "run_tasks", "share", "shared", "worker_cache",
           "worker_device", "ALLOWED_FAILURES"]

log = logging.getLogger(__name__)

#: Worker deaths a task may be part of and still run again, on a local cluster (Dask's
#: ``distributed.scheduler.allowed-failures``): the third death gives it up.
ALLOWED_FAILURES = 2
#: Seconds between checks of a run that finishes nothing, and how long all workers may stay paused.
CHECK_S = 10.0
STALL_S = 120.0

_CACHE: dict = {}  # on a worker process: lives as long as the worker
_DEVICE: dict = {}  # on a worker process: the device given by _Setup
_SHARED: dict = {}  # on a worker process: what share() gave it


def worker_cache(key, factory):
    """``factory()`` built once per process and kept under ``key`` (a worker's network, classifier)."""
    if key not in _CACHE:
        _CACHE[key] = factory()
    return _CACHE[key]


def worker_device(spec=None):
    """The device of a network on this worker: the GPU :func:`open_client` gave it when ``spec`` is
    ``"auto"``/``"cuda"``/None and it has one, else ``spec`` itself (checked by the caller)."""
    given = _DEVICE.get("device")
    if given is not None and (spec is None or str(spec).strip().lower() in ("auto", "cuda")):
        return given
    return spec


class _Setup:
    """Worker plugin: torch threads and the worker's GPU, set once on every (also restarted) worker."""

    name = "tio2fiji-setup"

    def __init__(self, threads_by_host, default_threads, device):
        self.threads_by_host = dict(threads_by_host)
        self.default_threads = default_threads
        self.device = device

    def setup(self, worker):
        import torch

        host = worker.address.split("://")[-1].rsplit(":", 1)[0]
        torch.set_num_threads(self.threads_by_host.get(host, self.default_threads))
        if self.device in (None, "auto", "cuda") and torch.cuda.is_available():
            try:  # a local cluster's workers are named 0..N-1: worker i takes GPU i mod count
                index = int(worker.name)
            except (TypeError, ValueError):
                index = sum(map(ord, str(worker.name)))
            _DEVICE["device"] = f"cuda:{index % torch.cuda.device_count()}"

    def teardown(self, worker):
        _CACHE.clear()


def _worker_plugin(base, *args):
    """A Dask worker plugin of the module-level class ``base`` (Dask imported only when used)."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class Plugin(base, WorkerPlugin):
        pass

    return Plugin(*args)


@contextmanager
def start_client(workers=None, scheduler=None, device=None, threads=None, preload=()):
    """Start a Dask client (:func:`open_client`'s) in a background thread; yield its future.

    The caller goes on (loading its model, checking its folder) while the worker processes start:
    on a 2-core machine the cluster's start (about 4 s: the workers import torch and tio2fiji)
    then overlaps the caller's own. ``future.result()`` is the client, or raises what connecting
    raised; the client and a local cluster are closed when the block ends.

    Parameters
    ----------
    workers, scheduler, device, threads
        As :func:`open_client` (both-or-neither of ``workers`` and ``scheduler`` is refused here,
        before anything starts).
    preload : sequence of str
        Modules a local cluster's workers import before they start (a fork server imports them
        once and forks every worker from it, where the platform has one).

    Yields
    ------
    concurrent.futures.Future of distributed.Client
    """
    from concurrent.futures import ThreadPoolExecutor

    _check_choice(workers, scheduler)
    with ThreadPoolExecutor(1, thread_name_prefix="tio2fiji-dask") as pool:
        future = pool.submit(_connect, workers, scheduler, device, threads, tuple(preload))
        try:
            yield future
        finally:
            try:
                client, cluster = future.result()
            except Exception:  # noqa: BLE001 - a failed start has nothing to close (the caller saw it)
                client = cluster = None
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()


@contextmanager
def open_client(workers=None, scheduler=None, device=None, threads=None, preload=()):
    """A Dask client on a local cluster of ``workers`` processes, or on ``scheduler``.

    Parameters
    ----------
    workers : int, optional
        Worker processes of a local cluster (each one Dask thread, ``cores // workers`` torch
        threads unless ``threads``).
    scheduler : str, optional
        Address (``tcp://host:8786``) or scheduler-file path of a running scheduler; its workers'
        torch threads are ``cores // (its workers on that host)`` unless ``threads``.
    device : str, optional
        ``--device``: with ``auto``/``cuda`` each worker takes one GPU in turn when there are any.
    threads : int, optional
        torch threads per worker.
    preload : sequence of str
        As :func:`start_client`.

    Yields
    ------
    distributed.Client

    Raises
    ------
    InputError
        Both or neither of ``workers`` and ``scheduler``, or the scheduler cannot be reached.
    """
    with start_client(workers, scheduler, device, threads, preload) as future:
        yield future.result()[0]


def _check_choice(workers, scheduler):
    if (workers is None) == (scheduler is None):
        raise InputError("give either --workers N (a local cluster) or --scheduler ADDRESS, not both.")
    if workers is not None and (isinstance(workers, bool) or int(workers) < 1):
        raise InputError(f"--workers must be 1 or more, not {workers}.")


def _connect(workers, scheduler, device, threads, preload):
    """``(client, local cluster or None)``, with the worker plugin registered."""
    import dask
    from distributed import Client, LocalCluster

    if logging.getLogger().getEffectiveLevel() > logging.INFO:  # Dask's INFO lines only with -v
        for name in ("distributed", *[n for n in logging.root.manager.loggerDict if n.startswith("distributed.")]):
            logging.getLogger(name).setLevel(logging.WARNING)
    # saturation 1: a worker holds only the task it runs, so one that dies takes no queued image with it
    config = {"distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
              "distributed.scheduler.worker-saturation": 1.0}
    cluster = None
    if workers is not None:
        import multiprocessing

        if "forkserver" in multiprocessing.get_all_start_methods():
            config["distributed.worker.multiprocessing-method"] = "forkserver"
        with dask.config.set(config):
            _preload_fork_server(preload)
            # ":0": the scheduler's HTTP server (dashboard, health) on a free port, never a clash
            cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                                   dashboard_address=":0", silence_logs=logging.ERROR)
        client = Client(cluster)
        setup = _Setup({socket.gethostname(): 0}, threads or torch_threads(int(workers)), device)
    else:
        with dask.config.set(config):
            try:
                kind = {"scheduler_file": str(scheduler)} if Path(str(scheduler)).is_file() \
                    else {"address": str(scheduler)}
                client = Client(**kind, timeout="30s")
            except (OSError, TimeoutError, ValueError) as exc:
                raise InputError(f"--scheduler {scheduler}: cannot connect ({exc}); start it first "
                                 f"(dask scheduler) or check the address.") from exc
        per_host: dict = {}
        for w in client.scheduler_info(n_workers=-1).get("workers", {}).values():
            h = w.get("host", "")
            per_host[h] = per_host.get(h, 0) + 1
        setup = _Setup({h: threads or torch_threads(n) for h, n in per_host.items()}, threads or 1, device)
    try:
        client.register_plugin(_worker_plugin(_Setup, setup.threads_by_host, setup.default_threads, setup.device),
                               name=_Setup.name)
    except BaseException:
        client.close()
        if cluster is not None:
            cluster.close()
        raise
    return client, cluster


def _preload_fork_server(modules):
    """Have the fork server of the local workers import ``modules`` (once, before the first worker).

    Each spawned worker would import torch and tio2fiji itself (3-4 s of CPU each); forked from a
    server that imported them, a worker starts in a fraction of a second. The server starts fresh
    (not a fork of this threaded process) and runs nothing but the imports, so the forks are safe.
    Once the server runs, later clusters of this process reuse it.
    """
    from distributed.utils import get_mp_context

    ctx = get_mp_context()  # Dask sets its own preload list here, once
    if ctx.get_start_method() == "forkserver" and modules:
        ctx.set_forkserver_preload(["distributed", "numpy", "pandas", *modules])


@contextmanager
def share(client, name, value):
    """Give every worker of ``client`` ``value`` under ``name`` (:func:`shared`) for the block, also
    the workers that join or restart during it (a worker plugin, kept by the scheduler): the way to
    send each worker one large object once, e.g. a network's graph, instead of with every task.
    The scheduler lets go of it when the block ends."""
    plugin = f"tio2fiji-shared-{name}"
    client.register_plugin(_worker_plugin(_Shared, name, value), name=plugin)
    try:
        yield
    finally:
        try:
            client.unregister_worker_plugin(plugin)
        except Exception as exc:  # noqa: BLE001 - a cluster going down takes the plugin with it
            log.debug("could not remove the worker plugin %s: %s", plugin, exc)


def shared(name, default=None):
    """On a worker: the value :func:`share` gave it under ``name``, else ``default``."""
    return _SHARED.get(name, default)


class _Shared:
    """Worker plugin: one value of :func:`share` (a module-level class, so that its methods reach
    this module's ``_SHARED`` on the worker, not a copy pickled with them)."""

    def __init__(self, name, value):
        self.key, self.value = name, value

    def setup(self, worker):
        _SHARED[self.key] = self.value

    def teardown(self, worker):
        _SHARED.pop(self.key, None)


def run_tasks(client, fn, items, key_prefix="tio2fiji"):
    """Run ``fn(*item)`` for every item on the cluster; yield ``(item, result, error)`` as each ends.

    ``error`` is the exception of a task that could not finish (e.g. ``KilledWorker``: its workers
    died more than :data:`ALLOWED_FAILURES` times); ``fn`` itself should catch its own errors and
    return them.
    """
    from distributed import wait

    items = list(items)
    if not items:
        return
    futures, run = {}, uuid.uuid4().hex[:12]
    for i, item in enumerate(items):
        fut = client.submit(fn, *item, key=f"{key_prefix}-{run}-{i}", pure=False)
        futures[fut] = item
    pending, paused_since = set(futures), None
    try:
        while pending:
            try:
                done = wait(pending, timeout=CHECK_S, return_when="FIRST_COMPLETED").done
            except TimeoutError:
                paused_since = _check_paused(client, paused_since)
                continue
            paused_since = None
            for fut in done:
                pending.discard(fut)
                try:
                    yield futures[fut], fut.result(), None
                except Exception as exc:  # noqa: BLE001 - the task's own errors come back as results
                    yield futures[fut], None, exc
                fut.release()
    finally:
        client.cancel([f for f in futures if not f.done()])


def _check_paused(client, since):
    """Raise when every worker has been paused (memory) for :data:`STALL_S`; else when it started.

    A paused worker starts no task and unpauses only when its memory falls, which a worker holding
    the network may never do: without this the run would wait forever. No workers at all is not an
    error (a batch queue may start them later).
    """
    import time

    workers = client.scheduler_info(n_workers=-1).get("workers", {}).values()
    statuses = [str(w.get("status", "")) for w in workers]
    if not statuses or any(st != "paused" for st in statuses):
        return None
    now = time.monotonic()
    since = now if since is None else since
    if now - since >= STALL_S:
        mem = ", ".join(f"{w.get('metrics', {}).get('memory', 0) / 2**30:.1f} of "
                        f"{(w.get('memory_limit') or 0) / 2**30:.1f} GiB" for w in workers)
        raise InputError(f"every Dask worker has been paused for {STALL_S:.0f} s because its memory is "
                          f"near its limit ({mem}): start the workers with a larger --memory-limit "
                          f"(4 GB or more each); the finished images are kept, a rerun resumes.")
    return since
