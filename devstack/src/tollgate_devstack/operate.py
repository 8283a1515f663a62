"""What an operator does with a running stack: detach it, read its status, follow logs, stop it."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from tollgate_devstack import plan
from tollgate_devstack.datadir import DataDir, pid_alive

SERVER_NAMES = ("nats", "postgres", "redis")


def _err(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def detach(data: DataDir, up_args: Sequence[str], wait_s: float) -> int:
    """Start `up` in the background (own session, output in logs/) and wait until it is ready."""
    pid = data.running_pid()
    if pid is not None:
        _err(f"Tollgate is already running on {data.root} (supervisor pid {pid})")
        return 1
    data.logs.mkdir(parents=True, exist_ok=True)
    out = data.logs / "supervisor.out"
    cmd = [
        sys.executable,
        "-m",
        "tollgate_devstack",
        "--data-dir",
        str(data.root),
        "up",
        *up_args,
        "--detached-child",
    ]
    with out.open("ab") as sink:
        child = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink, start_new_session=True
        )
    _err(f"started the supervisor in the background (pid {child.pid}); waiting until ready")
    deadline = time.monotonic() + wait_s
    log = data.log_file("supervisor")
    while time.monotonic() < deadline:
        if child.poll() is not None:
            _err(f"the supervisor exited with code {child.returncode} while starting:")
            for path in (log, out):
                with contextlib.suppress(OSError):
                    print(path.read_text(errors="replace")[-4000:], file=sys.stderr)
            return 1
        status = data.read_status() or {}
        if status.get("supervisor_pid") == child.pid and status.get("ready_at"):
            base = status.get("base_port", plan.BASE_PORT)
            print(f"Tollgate is up in the background: {plan.local_url(base)}")
            print(f"  pid file   {data.pid_file}")
            print(f"  logs       {data.logs}/ (./just logs [service])")
            print("  status     ./just status")
            print("  stop       ./just down")
            return 0
        time.sleep(0.5)
    _err(f"not ready within {wait_s:.0f}s; it keeps trying (./just status, ./just logs)")
    return 1


def down(data: DataDir, timeout: float = 120.0) -> int:
    """SIGTERM the supervisor of a detached stack and wait for its ordered stop."""
    pid = data.running_pid()
    if pid is None:
        print(f"Tollgate is not running on {data.root}")
        return 0
    _err(f"stopping the supervisor (pid {pid}): ingress, then the consumers, then the servers")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and not _is_zombie(pid):
        if time.monotonic() > deadline:
            _err(f"still running after {timeout:.0f}s; see {data.log_file('supervisor')}")
            return 1
        time.sleep(0.2)
    _err(f"stopped; data kept in {data.root}")
    return 0


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def logs(data: DataDir, name: str | None, follow: bool, lines: int) -> int:
    """`tail` the log of one service or server, or of the supervisor and every service."""
    known = [s.name for s in plan.SERVICES] + list(SERVER_NAMES) + ["supervisor"]
    # Replicas (`ledger-2`), the front and cluster nodes (`nats-n1`) log under their own name.
    known += [p.stem for p in sorted(data.logs.glob("*.log"))] if data.logs.is_dir() else []
    if name is not None and name not in known:
        _err(f"unknown name {name!r}; one of: {', '.join(known)}")
        return 2
    names = [name] if name else ["supervisor", *(s.name for s in plan.SERVICES)]
    paths = [str(data.log_file(n)) for n in names if data.log_file(n).exists()]
    if not paths:
        _err(f"no logs yet under {data.root}")
        return 1
    cmd = ["tail", "-n", str(lines), *(["-F"] if follow else []), *paths]
    with contextlib.suppress(KeyboardInterrupt):
        return subprocess.call(cmd)
    return 0


# -- status -------------------------------------------------------------------------------


def _get_json(url: str, timeout: float = 2.0) -> tuple[int | None, Any]:
    try:
        resp = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        return None, type(exc).__name__
    try:
        return resp.status_code, resp.json()
    except ValueError:
        return resp.status_code, resp.text[:200]


def consumer_lag(monitor_url: str) -> dict[str, int] | None:
    """Pending messages per durable consumer (`STREAM/consumer`), from NATS monitoring."""
    code, body = _get_json(f"{monitor_url}/jsz?consumers=true&config=true")
    if code != 200 or not isinstance(body, dict):
        return None
    lag: dict[str, int] = {}
    for account in body.get("account_details") or []:
        for stream in account.get("stream_detail") or []:
            for consumer in stream.get("consumer_detail") or []:
                if not (consumer.get("config") or {}).get("durable_name"):
                    continue  # KV watchers and other ephemeral consumers come and go
                key = f"{stream.get('name')}/{consumer.get('name')}"
                lag[key] = int(consumer.get("num_pending", 0)) + int(
                    consumer.get("num_ack_pending", 0)
                )
    return lag


def spool_depth(health: Any) -> int | None:
    """Events ingress holds in its local spool, as its /health reports them."""
    if not isinstance(health, dict):
        return None
    nats = (health.get("dependencies") or {}).get("nats") or {}
    if isinstance(nats.get("spooled"), int):
        return int(nats["spooled"])
    found = re.search(r"(\d+) events spooled", str(nats.get("error", "")))
    return int(found.group(1)) if found else None


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def collect(data: DataDir) -> dict[str, Any] | None:
    """The status file, checked against the pid file and enriched with live probes."""
    status = data.read_status()
    pid = data.running_pid()
    if status is None or pid is None or status.get("supervisor_pid") != pid:
        return None
    for unit in status.get("units", []):
        if unit["kind"] == "service" and unit.get("port"):
            code, body = _get_json(f"{plan.local_url(unit['port'])}/health")
            unit["health"] = "healthy" if code == 200 else (f"{code}" if code else str(body))
            if unit["name"] == "ingress":
                status["spool_depth"] = spool_depth(body)
        elif unit["kind"] == "server":
            unit["health"] = "up" if unit["state"] == "running" else "down"
    monitor = status.get("nats_monitor_url")
    status["consumer_lag"] = consumer_lag(monitor) if monitor else None
    return status


def render(status: dict[str, Any]) -> str:
    lines = [
        f"supervisor pid {status['supervisor_pid']}, {status['phase']}, "
        f"up {_uptime(time.time() - status['started_at'])}, data {status.get('data_dir')}",
        "",
        f"{'name':<12}{'kind':<9}{'state':<9}{'health':<12}{'pid':<9}{'port':<7}"
        f"{'uptime':<9}{'restarts':<9}",
    ]
    for u in status["units"]:
        state = u["state"]
        if u.get("next_restart_in_s") is not None:
            state = f"{state} (retry in {u['next_restart_in_s']:.0f}s)"
        lines.append(
            f"{u['name']:<12}{u['kind']:<9}{state:<9}{str(u.get('health', '-'))[:11]:<12}"
            f"{u['pid'] or '-'!s:<9}{u['port'] or '-'!s:<7}{_uptime(u['uptime_s']):<9}"
            f"{u['restarts']:<9}" + ("  CRASH LOOP" if u["crash_loop"] else "")
        )
    lag = status.get("consumer_lag")
    lines.append("")
    if lag is None:
        lines.append("consumer lag: unknown (NATS monitoring not reachable or not embedded)")
    else:
        lines.append("consumer lag (pending + unacknowledged):")
        lines += [f"  {name:<32}{n}" for name, n in sorted(lag.items())]
    spool = status.get("spool_depth")
    lines.append(f"ingress spool depth: {spool if spool is not None else 'unknown'}")
    return "\n".join(lines)


def status(data: DataDir, as_json: bool) -> int:
    collected = collect(data)
    if collected is None:
        print(f"Tollgate is not running on {data.root}")
        return 3
    if as_json:
        import json

        print(json.dumps(collected, indent=1, sort_keys=True))
    else:
        print(render(collected))
    troubled = [
        u["name"]
        for u in collected["units"]
        if u["state"] != "running" or u.get("health") not in ("healthy", "up")
    ]
    return 1 if troubled else 0
