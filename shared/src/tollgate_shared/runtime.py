"""Starts a service process: logging, the event loop, and the HTTP server; or, for a
service that runs as several worker processes on one port, the supervisor of them."""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from multiprocessing.connection import wait as wait_for_exit
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any, Literal, TypeVar

import uvicorn
from prometheus_client import multiprocess
from uvicorn.config import STARTUP_FAILURE

from tollgate_shared.config import TollgateConfig
from tollgate_shared.settings import ServiceSettings, check_master_key

log = logging.getLogger(__name__)

# prometheus_client's multiprocess mode: set, every worker writes its samples to files in
# this directory and `/metrics` sums them (it must be set before prometheus_client is
# imported, so the supervisor sets it for the worker processes it starts).
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def metrics_dir() -> str | None:
    """Where the worker processes of this service write their metrics, or None when this
    process exports only its own."""
    return os.environ.get(METRICS_DIR_ENV) or None


# How each worker's process_* metrics join the sums (prometheus_client's ProcessCollector
# does not run in multiprocess mode): CPU seconds add up over every worker that ever ran
# (a counter: it never drops when one is replaced); memory and descriptors add up over
# the live ones; the start time and descriptor limit are the live workers' least.
_PROCESS_GAUGE_MODES: dict[str, Literal["livesum", "livemin"]] = {
    "process_virtual_memory_bytes": "livesum",
    "process_resident_memory_bytes": "livesum",
    "process_open_fds": "livesum",
    "process_start_time_seconds": "livemin",
    "process_max_fds": "livemin",
}
PROCESS_METRICS_PERIOD_S = 1.0


def export_process_metrics(period_s: float = PROCESS_METRICS_PERIOD_S) -> threading.Thread | None:
    """In a worker (multiprocess mode), copy this process's process_* samples, read by
    prometheus_client's ProcessCollector, into the shared metric files every `period_s`
    from a daemon thread, so `/metrics` on any worker has them for all workers together."""
    if metrics_dir() is None:
        return None
    from prometheus_client import Counter, Gauge, ProcessCollector

    source = ProcessCollector(registry=None)  # type: ignore[no-untyped-call]
    families = {f.name: f for f in source.collect()}
    if not families:
        return None  # no /proc here: nothing to export
    gauges = {
        name: Gauge(name, families[name].documentation, registry=None, multiprocess_mode=mode)
        for name, mode in _PROCESS_GAUGE_MODES.items()
        if name in families
    }
    cpu = Counter(
        "process_cpu_seconds",
        "Total user and system CPU time spent in seconds (every worker).",
        registry=None,
    )

    def copy() -> None:
        counted = 0.0
        while True:
            for family in source.collect():
                for sample in family.samples:
                    if sample.name == "process_cpu_seconds_total":
                        cpu.inc(max(0.0, sample.value - counted))
                        counted = max(counted, sample.value)
                    elif sample.name in gauges:
                        gauges[sample.name].set(sample.value)
            time.sleep(period_s)

    thread = threading.Thread(target=copy, name="process-metrics", daemon=True)
    thread.start()
    return thread


def setup_logging(level: str, service: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s",
    )
    # Access logs on the hot path are the proxy's job, not ours.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs every request at INFO: measurable CPU on the proxy's hot path.
    logging.getLogger("httpx").setLevel(logging.WARNING)


# How long a service keeps an idle HTTP connection open, and how long a service's client of
# another service (ingress forwarding to admin or ledger) reuses one: shorter, so a client
# never sends on a connection the server is closing at the same moment (the race ends in
# a reset and a failed call when both wait 5 s, uvicorn's and httpx's default).
SERVER_KEEP_ALIVE_S = 30
PEER_KEEPALIVE_EXPIRY_S = 10.0


# Collect young objects only after this many more container allocations than frees (the
# default is 700), and older generations rarely (see `tune_gc`).
GC_THRESHOLDS = (50_000, 20, 20)


def tune_gc() -> None:
    """Keep the cyclic garbage collector off the hot paths of a service process.

    A ledger spend batch keeps thousands of containers alive at once (events, rows,
    metadata), and ingress allocates a few hundred per call; at the default thresholds
    that sets off hundreds of young collections a second, and the older ones re-walk
    every long-lived object of the imports (about 40 us of the ~150 us an event cost in
    the ledger's ingest bench, and the occasional multi-millisecond pause in a call's
    p99). The objects alive before serving are moved out of the collector's sight
    (`gc.freeze`), and young collections wait for 50,000 allocations. Nothing relies on
    prompt collection of cycles.
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def serve(
    app: Any,
    host: str,
    port: int,
    *,
    log_level: str = "info",
    grace_s: int = 10,
    sockets: list[socket.socket] | None = None,
) -> None:
    """Serve an ASGI app with uvloop and httptools; graceful on SIGINT/SIGTERM. With
    `sockets` (a worker's own bound socket), serve on them instead of binding host:port."""
    options: dict[str, Any] = {
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",
        "log_level": log_level.lower(),
        "access_log": False,
        # Keep the process's logging setup (setup_logging) instead of uvicorn's own.
        "log_config": None,
        "timeout_graceful_shutdown": grace_s,
        "timeout_keep_alive": SERVER_KEEP_ALIVE_S,
    }
    tune_gc()
    if sockets is None:
        uvicorn.run(app, host=host, port=port, **options)
        return
    server = _WorkerServer(uvicorn.Config(app, host=host, port=port, **options))
    server.run(sockets=sockets)
    if not server.started:
        sys.exit(STARTUP_FAILURE)


S = TypeVar("S", bound=ServiceSettings)


def serve_service(
    settings: S,
    create_app: Callable[[S, TollgateConfig], Any],
    *,
    workers: int = 1,
    worker_settings: Callable[[S, int], S] | None = None,
    service: str = "",
) -> None:
    """The `serve` command of every service: read the config, refuse a weak master key off
    loopback, build the app from its settings and config, and serve it.

    With `workers` > 1 this process becomes the supervisor of that many worker processes
    on the same port (see `Supervisor`); `worker_settings(settings, index)` gives each
    worker its own settings (its own spool file, say)."""
    cfg = settings.load_config()
    check_master_key(settings.effective_master_key(cfg), settings.host)
    if workers > 1:
        per_worker = worker_settings or (lambda s, _i: s)
        sys.exit(
            Supervisor(
                [per_worker(settings, i) for i in range(workers)],
                create_app,
                service or "service",
                settings.shutdown_grace_s,
            ).run()
        )
    serve(
        create_app(settings, cfg),
        settings.host,
        settings.port,
        log_level=settings.log_level,
        grace_s=settings.shutdown_grace_s,
    )


# -- several worker processes on one port ------------------------------------------------


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port with SO_REUSEPORT (not yet listening: uvicorn listens
    once the app has started, so the kernel sends connections only to ready workers).
    Every worker binds its own, and the kernel spreads new connections across them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _port_is_free(host: str, port: int) -> bool:
    """No listener on host:port: a socket without SO_REUSEPORT binds only then, so a second
    supervisor (or a single-process ingress) on the same port is refused at start instead
    of silently joining the group."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _exit_with_parent(parent: int) -> None:
    """A worker stops gracefully when its supervisor is gone (killed with SIGKILL, say),
    instead of serving on unsupervised."""
    while os.getppid() == parent:
        time.sleep(1.0)
    log.warning("supervisor %d is gone: stopping", parent)
    os.kill(os.getpid(), signal.SIGTERM)


# Sent by the supervisor to a worker that does not stop in time: it writes its stacks.
STACK_DUMP_SIGNAL = signal.SIGUSR1


# The stop signals a worker received before uvicorn listened for its own (see _WorkerServer).
_early_stop: list[int] = []


def _remember(sig: int, _frame: FrameType | None) -> None:
    _early_stop.append(sig)


class _WorkerServer(uvicorn.Server):
    """uvicorn's server, which also honours a stop signal that reached the worker while it
    was still starting (building its app, before uvicorn's own handlers were installed):
    it starts, serves nothing new, runs its shutdown and exits 0, instead of missing the
    signal and serving on until the supervisor kills it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            for sig in _early_stop:
                self.handle_exit(sig, None)
            yield


def run_worker(
    settings: S, create_app: Callable[[S, TollgateConfig], Any], service: str, index: int
) -> None:
    """One worker process: its own socket on the shared port, its own app."""
    # Until uvicorn installs its handlers a stop signal is remembered (and honoured then);
    # uvicorn re-raises the signal that stopped it once it has drained, with the handler it
    # found: this one, so a drained worker exits 0 instead of dying of its SIGTERM.
    signal.signal(signal.SIGTERM, _remember)
    signal.signal(signal.SIGINT, _remember)
    # The supervisor asks a worker that does not stop in time for its threads' stacks
    # (written to stderr, the log) before it kills it, so the log shows where it hung.
    faulthandler.register(STACK_DUMP_SIGNAL, all_threads=True)
    setup_logging(settings.log_level, f"{service}[{index}]")
    export_process_metrics()
    threading.Thread(
        target=_exit_with_parent, args=(os.getppid(),), name="exit-with-parent", daemon=True
    ).start()
    try:
        sock = reuseport_socket(settings.host, settings.port)
    except OSError as exc:
        log.error("cannot bind %s:%d: %s", settings.host, settings.port, exc)
        sys.exit(STARTUP_FAILURE)
    serve(
        create_app(settings, settings.load_config()),
        settings.host,
        settings.port,
        log_level=settings.log_level,
        grace_s=settings.shutdown_grace_s,
        sockets=[sock],
    )


class Supervisor:
    """Starts one worker process per settings object, all serving the same host:port.

    Each worker binds its own SO_REUSEPORT socket, so the kernel balances connections
    across them (no shared accept queue). SIGTERM or SIGINT is passed on as SIGTERM: every
    worker drains as a single process would, then the supervisor exits 0. A worker that
    fails to start (exit code 3: bad config, port taken, spool held) stops them all and
    the supervisor exits 3; a worker that dies after starting is restarted with the same
    settings (its own spool file is replayed by its successor), unless `max_restarts`
    happen within `restart_window_s`, when the supervisor stops the rest and exits 1. A
    worker still running `stop_extra_s` past its grace once stopping writes its threads'
    stacks to the log (faulthandler, STACK_DUMP_SIGNAL) and is killed; the exit is then 1.
    Metrics: the workers run in prometheus_client's multiprocess mode (METRICS_DIR_ENV,
    a fresh directory per supervisor unless set), so `/metrics` on any worker sums all,
    the process_* families included (`export_process_metrics`).
    """

    def __init__(
        self,
        settings: list[S],
        create_app: Callable[[S, TollgateConfig], Any],
        service: str,
        grace_s: float,
        *,
        max_restarts: int = 5,
        restart_window_s: float = 60.0,
        stop_extra_s: float = 20.0,
    ) -> None:
        self.settings: list[Any] = settings
        self.create_app: Any = create_app
        self.service = service
        self.grace_s = grace_s
        self.max_restarts = max_restarts
        self.restart_window_s = restart_window_s
        self.stop_extra_s = stop_extra_s
        self.procs: dict[int, BaseProcess] = {}
        self._restarts: deque[float] = deque()
        self._stop_by: float | None = None
        self._context = multiprocessing.get_context("spawn")

    def run(self) -> int:
        first = self.settings[0]
        if first.port == 0:
            log.error("several workers need a fixed port (TOLLGATE_PORT), not 0")
            return STARTUP_FAILURE
        if not _port_is_free(first.host, first.port):
            log.error("%s:%d is already in use", first.host, first.port)
            return STARTUP_FAILURE
        given = metrics_dir()
        if given is None:
            directory = tempfile.mkdtemp(prefix=f"tollgate-{self.service}-metrics-")
        else:
            directory = given
            os.makedirs(directory, exist_ok=True)
            # prometheus_client's rule: the directory is wiped between runs.
            for stale in os.scandir(directory):
                if stale.name.endswith(".db"):
                    os.unlink(stale.path)
        os.environ[METRICS_DIR_ENV] = directory
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        log.info(
            "%s: %d workers on %s:%d (metrics in %s)",
            self.service,
            len(self.settings),
            first.host,
            first.port,
            directory,
        )
        try:
            for index in range(len(self.settings)):
                self._start(index)
            return self._watch()
        finally:
            if given is None:
                shutil.rmtree(directory, ignore_errors=True)

    def _start(self, index: int) -> None:
        if self._stop_by is not None:
            return  # stopped while the workers were being started
        proc = self._context.Process(
            target=run_worker,
            args=(self.settings[index], self.create_app, self.service, index),
            name=f"{self.service}-worker-{index}",
        )
        proc.start()
        self.procs[index] = proc
        if self._stop_by is not None and proc.pid is not None:
            # The stop came while this worker was being started, before `_stop` could see
            # it: it gets the SIGTERM the others got.
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)

    def _stop(self, _sig: int = signal.SIGTERM, _frame: FrameType | None = None) -> None:
        """Drain every worker (also the signal handler of SIGTERM and SIGINT)."""
        if self._stop_by is None:
            # uvicorn's drain, then the app's own shutdown (the publisher flushes), then kill.
            self._stop_by = time.monotonic() + self.grace_s + self.stop_extra_s
        for proc in list(self.procs.values()):
            if proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)

    def _watch(self) -> int:
        code = 0
        while self.procs:
            wait_for_exit([p.sentinel for p in self.procs.values()], timeout=1.0)
            for index, proc in list(self.procs.items()):
                if proc.exitcode is None:
                    continue
                del self.procs[index]
                if proc.pid is not None:
                    # Its live gauges leave the sums; its counters stay (totals never drop).
                    multiprocess.mark_process_dead(proc.pid)  # type: ignore[no-untyped-call]
                code = max(code, self._exited(index, proc))
            if self._stop_by is not None and time.monotonic() > self._stop_by:
                self._kill_the_rest()
                code = max(code, 1)
                self._stop_by = time.monotonic() + 5
        return code

    def _kill_the_rest(self) -> None:
        """Kill the workers still running past the stop deadline, each after its stacks
        (one at a time, so the dumps do not interleave in the log)."""
        for proc in self.procs.values():
            log.error(
                "worker %s did not stop in time: its stacks follow, then it is killed", proc.name
            )
            if proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, STACK_DUMP_SIGNAL)
                time.sleep(0.5)
            proc.kill()

    def _exited(self, index: int, proc: BaseProcess) -> int:
        """What a worker's exit means: 0 (stopping, or restarted) or the supervisor's code."""
        if self._stop_by is not None:
            # Killed by the SIGTERM it was sent before its first line ran (it was still being
            # spawned): nothing had started, so that is a clean stop too.
            if proc.exitcode not in (0, -signal.SIGTERM):
                log.warning("worker %d (pid %s) stopped with %s", index, proc.pid, proc.exitcode)
                return 1
            return 0
        if proc.exitcode == STARTUP_FAILURE:
            log.error("worker %d failed to start: stopping every worker", index)
            self._stop()
            return STARTUP_FAILURE
        now = time.monotonic()
        while self._restarts and self._restarts[0] < now - self.restart_window_s:
            self._restarts.popleft()
        if len(self._restarts) >= self.max_restarts:
            log.error(
                "worker %d (pid %s) exited with %s; %d restarts within %.0f s: giving up",
                index,
                proc.pid,
                proc.exitcode,
                len(self._restarts),
                self.restart_window_s,
            )
            self._stop()
            return 1
        self._restarts.append(now)
        log.warning("worker %d (pid %s) exited with %s: restarting", index, proc.pid, proc.exitcode)
        self._start(index)
        return 0
