"""Keeps every server and service running: restart with backoff, crash-loop reports, ordered stop.

One thread ticks over the units: a unit that exited is restarted after 1 s (`up
--restart-backoff`), then 2, 4, ... up to 30 s between tries, forever; the others are
never touched. Five exits within two minutes is a crash loop, said loudly on the console and in the
status file that `status` reads, and announced once per loop on NATS
(`ops.service.crash_loop.v1`, then `ops.service.recovered.v1` once the unit runs
stable again) for the alerter's `service_crash_loop` alert. Stopping goes ingress
first (no call is cut), then the consumers together (they drain), then the servers,
each phase bounded.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tollgate_devstack.announce import Announcer, crash_loop_event, nats_target, new_loop_id
from tollgate_devstack.datadir import DataDir
from tollgate_devstack.restarts import (
    CRASH_LOOP_WINDOW_S,
    FIRST_DELAY_S,
    STABLE_AFTER_S,
    RestartPolicy,
)
from tollgate_devstack.units import Console, Unit
from tollgate_shared.vocabulary import ServiceCondition

# Bounds of the ordered stop. uvicorn drains for up to 10 s on SIGTERM.
FRONT_STOP_S = 15.0
CONSUMERS_STOP_S = 20.0
SERVER_STOP_S = 10.0


@dataclass
class Supervised:
    unit: Unit
    kind: str  # "server" or "service"
    port: int | None = None
    # Shutdown phase: 0 the front door (ingress), 1 the consumers, 2+ the servers.
    stop_phase: int = 1
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    state: str = "stopped"
    started_mono: float = 0.0
    started_wall: float = 0.0
    next_start: float | None = None
    last_exit: int | None = None
    stable: bool = False
    # The crash loop in progress (announced on NATS), None when there is none.
    loop_id: str | None = None

    @property
    def name(self) -> str:
        return self.unit.name


class Supervisor:
    def __init__(
        self,
        console: Console,
        data: DataDir,
        clock: Callable[[], float] = time.monotonic,
        announcer: Announcer | None = None,
        restart_backoff_s: float = FIRST_DELAY_S,
    ) -> None:
        self.console = console
        self.restart_backoff_s = restart_backoff_s
        self.data = data
        self.clock = clock
        self.units: list[Supervised] = []
        self.phase = "starting"
        self.info: dict[str, Any] = {}
        self.started_wall = time.time()
        self._lock = threading.Lock()
        # Publishes to the stack's NATS once `info` names it (see `nats_target`).
        self.announcer = announcer or Announcer(lambda: nats_target(self.info), console.say)

    def add(self, entry: Supervised, *, start: bool = True) -> Supervised:
        entry.policy.first_delay_s = self.restart_backoff_s
        self.units.append(entry)
        if start:
            self._start(entry, first=True)
        return entry

    def get(self, name: str) -> Supervised:
        return next(e for e in self.units if e.name == name)

    def _start(self, entry: Supervised, first: bool = False) -> None:
        try:
            entry.unit.start()
        except Exception as exc:
            delay = entry.policy.on_exit(self.clock(), 0.0)
            entry.state = "backoff"
            entry.next_start = self.clock() + delay
            self.console.say(f"{entry.name} could not start ({exc}); retrying in {delay:.0f} s")
            self._report_loop(entry)
            return
        if not first:
            entry.policy.on_restart()
        entry.state = "running"
        entry.started_mono = self.clock()
        entry.started_wall = time.time()
        entry.next_start = None
        entry.stable = False

    def tick(self) -> None:
        """Restart what exited once its backoff is over; note who became stable."""
        now = self.clock()
        with self._lock:
            if self.phase == "stopping":
                return
            for entry in self.units:
                if entry.state == "running" and not entry.unit.alive():
                    self._on_exit(entry, now)
                elif entry.state == "running":
                    if not entry.stable and now - entry.started_mono >= STABLE_AFTER_S:
                        entry.stable = True
                        if entry.policy.on_stable():
                            self.console.say(f"{entry.name} is running again (crash loop over)")
                            self._announce(entry, "recovered")
                elif (
                    entry.state == "backoff"
                    and entry.next_start is not None
                    and now >= entry.next_start
                ):
                    self.console.say(
                        f"restarting {entry.name} (restart #{entry.policy.restarts + 1})"
                    )
                    self._start(entry)

    def _on_exit(self, entry: Supervised, now: float) -> None:
        ran = now - entry.started_mono
        entry.last_exit = entry.unit.exit_code()
        delay = entry.policy.on_exit(now, ran)
        entry.state = "backoff"
        entry.next_start = now + delay
        code = "" if entry.last_exit is None else f" (code {entry.last_exit})"
        self.console.say(
            f"{entry.name} exited{code} after {ran:.1f} s; restarting in {delay:.0f} s; "
            "the others keep running"
        )
        self._report_loop(entry)

    def _report_loop(self, entry: Supervised) -> None:
        if entry.policy.crash_loop:
            log = self.data.log_file(entry.name)
            self.console.line(
                f"!!! CRASH LOOP: {entry.name} exited {len(entry.policy.exits)} times within "
                f"{CRASH_LOOP_WINDOW_S:.0f} s; still retrying (up to every 30 s). "
                f"Its output: {log}"
            )
            if entry.loop_id is None:
                entry.loop_id = new_loop_id()
                self._announce(entry, "crash_loop")

    def _announce(self, entry: Supervised, condition: ServiceCondition) -> None:
        if entry.loop_id is None:
            return
        now = self.clock()
        event = crash_loop_event(
            condition,
            service=entry.name,
            kind=entry.kind,
            loop_id=entry.loop_id,
            exits=len(entry.policy.exits),
            window_s=CRASH_LOOP_WINDOW_S,
            restarts=entry.policy.restarts,
            last_exit_code=entry.last_exit,
            retry_in_s=round(max(0.0, entry.next_start - now), 1)
            if condition == "crash_loop" and entry.next_start is not None
            else None,
            log_file=self.data.log_file(entry.name),
        )
        if condition == "recovered":
            entry.loop_id = None
        self.announcer.announce(event)

    def run(self, stop: threading.Event, interval: float = 0.25) -> None:
        """Tick until `stop` is set, writing the status file about once a second."""
        self.phase = "running"
        last_status = 0.0
        while not stop.is_set():
            self.tick()
            if self.clock() - last_status >= 1.0:
                self.write_status()
                last_status = self.clock()
            stop.wait(interval)

    def shutdown(self, kind: str | None = None) -> None:
        """Ordered stop of every unit (or those of one `kind`): phase by phase, each bounded;
        what does not stop in time is killed."""
        with self._lock:
            self.phase = "stopping"
        self.write_status()
        if kind is None:
            self.announcer.close()  # before NATS stops
        chosen = [e for e in self.units if kind is None or e.kind == kind]
        for phase in sorted({e.stop_phase for e in chosen}):
            self._stop_group([e for e in chosen if e.stop_phase == phase])
        for entry in chosen:
            entry.state = "stopped"
        if kind is None:
            self.phase = "stopped"
        self.write_status()

    def _stop_group(self, group: Sequence[Supervised]) -> None:
        live = [e for e in group if e.unit.alive()]
        if not live:
            return
        kind = "servers" if all(e.kind == "server" for e in live) else "services"
        self.console.say(f"stopping {', '.join(e.name for e in live)}")
        bound = {0: FRONT_STOP_S}.get(live[0].stop_phase, CONSUMERS_STOP_S)
        if kind == "servers":
            bound = SERVER_STOP_S
        threads = [
            threading.Thread(target=e.unit.stop, args=(bound,), name=f"stop-{e.name}") for e in live
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(bound + 5)
        for e in live:
            if e.unit.alive():
                self.console.say(f"{e.name} did not stop within {bound:.0f} s; killing it")
                e.unit.kill()

    def snapshot(self) -> dict[str, Any]:
        now_mono, now_wall = self.clock(), time.time()
        units = []
        for e in self.units:
            units.append(
                {
                    "name": e.name,
                    "kind": e.kind,
                    "state": e.state,
                    "pid": e.unit.pid() if e.state == "running" else None,
                    "port": e.port,
                    "started_at": e.started_wall if e.state == "running" else None,
                    "uptime_s": round(now_mono - e.started_mono, 1)
                    if e.state == "running"
                    else None,
                    "restarts": e.policy.restarts,
                    "crash_loop": e.policy.crash_loop,
                    "last_exit": e.last_exit,
                    "next_restart_in_s": round(max(0.0, e.next_start - now_mono), 1)
                    if e.next_start is not None
                    else None,
                }
            )
        return {
            "supervisor_pid": os.getpid(),
            "phase": self.phase,
            "started_at": self.started_wall,
            "updated_at": now_wall,
            **self.info,
            "units": units,
        }

    def write_status(self) -> None:
        self.data.write_status(self.snapshot())
