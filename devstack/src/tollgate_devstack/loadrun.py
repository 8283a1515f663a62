"""Steady load through a running stack, recorded for `reconcile`, and the stack handle the
fault and scale-out suites drive (`up --detach`, kill -9, freeze, wait until back).

A run creates its own team, user and key (so their spend totals belong to the run alone),
then calls `/v1/chat/completions` from a few threads until stopped, writing each call's
`x-litellm-call-id`, `x-litellm-response-cost` and status to the run record.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tollgate_devstack.datadir import DataDir
from tollgate_devstack.embedded import free_port, port_is_free
from tollgate_devstack.reconcile import RunHeader, RunRecorder
from tollgate_shared import names
from tollgate_shared.config import default_config_dict
from tollgate_shared.state import hash_key

URL_VARS = ("TOLLGATE_NATS_URL", "TOLLGATE_DATABASE_URL", "TOLLGATE_REDIS_URL")
MASTER = "sk-1234"


def free_base_port(span: int) -> int:
    """A base port with `span` free consecutive ports from it."""
    for _ in range(100):
        base = free_port()
        if base + span < 65536 and all(port_is_free(base + i) for i in range(span)):
            return base
    raise RuntimeError(f"no {span} consecutive free ports")


@dataclass
class Stack:
    """A stack started with `up --detach` in `data_dir`; `down()` stops it."""

    data_dir: Path
    status: dict[str, Any] = field(default_factory=dict)
    # Ports the stack's config points at for servers the tests start later (receivers).
    reserved: dict[str, int] = field(default_factory=dict)

    @classmethod
    def up(
        cls,
        data_dir: Path,
        *args: str,
        timeout: float = 400,
        env: Mapping[str, str] | None = None,
    ) -> Stack:
        replicas = int(args[args.index("--replicas") + 1]) if "--replicas" in args else 1
        base = free_base_port(1 + 5 * replicas)
        done = devstack(
            data_dir, "up", "--detach", "--base-port", str(base), *args, timeout=timeout, env=env
        )
        if done.returncode != 0:
            log = data_dir / "logs" / "supervisor.log"
            text = log.read_text()[-6000:] if log.exists() else ""
            raise RuntimeError(f"up --detach failed:\n{done.stderr}\n{text}")
        stack = cls(data_dir)
        stack.refresh()
        return stack

    def down(self) -> None:
        devstack(self.data_dir, "down", timeout=180)

    def refresh(self) -> dict[str, Any]:
        self.status = json.loads((self.data_dir / "run" / "status.json").read_text())
        return self.status

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.status['base_port']}"

    @property
    def database_url(self) -> str:
        return str(self.status["servers"]["TOLLGATE_DATABASE_URL"])

    def unit(self, name: str) -> dict[str, Any]:
        return next(u for u in self.refresh()["units"] if u["name"] == name)

    def names(self, prefix: str) -> list[str]:
        return [u["name"] for u in self.refresh()["units"] if u["name"].split("-")[0] == prefix]

    def log_excerpt(self, prefix: str, lines: int = 40) -> str:
        """The last `lines` warnings and errors in the log of every `prefix` unit: what a
        failing test prints to say what the services saw."""
        out = []
        for name in self.names(prefix):
            path = DataDir(self.data_dir).log_file(name)
            text = path.read_text(errors="replace").splitlines() if path.exists() else []
            marks = (" WARNING ", " ERROR ", " CRITICAL ", "Traceback")
            hits = [ln for ln in text if any(m in ln for m in marks)]
            out.append(f"--- {name}: {len(hits)} warnings ---\n" + "\n".join(hits[-lines:]))
        return "\n".join(out)

    def ingress_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.unit(n)['port']}" for n in self.names("ingress")]

    def kill(self, name: str) -> int:
        """kill -9 the unit's process; its old pid."""
        pid = int(self.unit(name)["pid"])
        os.kill(pid, signal.SIGKILL)
        return pid

    def back(self, name: str, old_pid: int) -> bool:
        unit = self.unit(name)
        if unit["state"] != "running" or unit["pid"] in (None, old_pid):
            return False
        if unit["kind"] == "service" and unit.get("port"):
            try:
                return httpx.get(f"http://127.0.0.1:{unit['port']}/health", timeout=2).is_success
            except httpx.HTTPError:
                return False
        return True

    def wait_back(self, name: str, old_pid: int, within_s: float = 90) -> float:
        start = time.monotonic()
        while not self.back(name, old_pid):
            if time.monotonic() - start > within_s:
                raise TimeoutError(f"{name} not back within {within_s:.0f} s")
            time.sleep(0.2)
        return time.monotonic() - start

    @contextlib.contextmanager
    def frozen(self, names_: Sequence[str]) -> Iterator[None]:
        """SIGSTOP the units' whole process groups (a hung host: connections stay open and
        nothing answers), SIGCONT on exit. PostgreSQL's backends are frozen too."""
        groups = []
        for n in names_:
            pid = int(self.unit(n)["pid"])
            groups.append(postgres_pids(pid) if n == "postgres" else [pid])
        for pids in groups:
            for p in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGSTOP)
        try:
            yield
        finally:
            for pids in groups:
                for p in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p, signal.SIGCONT)

    def nats_leader(self, stream: str = "LLM") -> str | None:
        """The cluster node (`nats-n1`…) leading `stream`, from NATS monitoring."""
        for node in self.status.get("nats_cluster") or []:
            try:
                body = httpx.get(f"{node['monitor_url']}/jsz?streams=true", timeout=2).json()
            except (httpx.HTTPError, ValueError):
                continue
            for account in body.get("account_details") or []:
                for s in account.get("stream_detail") or []:
                    leader = (s.get("cluster") or {}).get("leader")
                    if s.get("name") == stream and leader:
                        return f"nats-{leader}"
        return None


def postgres_pids(postmaster: int) -> list[int]:
    """The postmaster and its children (the backends and background workers)."""
    pids = [postmaster]
    with contextlib.suppress(OSError):
        for child in Path("/proc").iterdir():
            if not child.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                stat = (child / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                    pids.append(int(child.name))
    return pids


def devstack(
    data_dir: Path, *args: str, timeout: float = 300, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in URL_VARS}
    full.pop("TOLLGATE_CONFIG", None)
    full.update(env or {})
    full["PYTHONUNBUFFERED"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "tollgate_devstack", "--data-dir", str(data_dir), *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def create_run_entities(
    url: str, run_id: str, master: str = MASTER, **key: Any
) -> tuple[str, str, str]:
    """A team, a user and a key of theirs for one run; (plaintext key, team id, user id)."""
    auth = {"Authorization": f"Bearer {master}"}
    team_id, user_id = f"team-{run_id}", f"user-{run_id}"
    with httpx.Client(base_url=url, headers=auth, timeout=30) as http:
        for path, body in (
            ("/team/new", {"team_id": team_id}),
            ("/user/new", {"user_id": user_id}),
        ):
            resp = http.post(path, json=body)
            resp.raise_for_status()
        resp = http.post("/key/generate", json={"team_id": team_id, "user_id": user_id, **key})
        resp.raise_for_status()
        return str(resp.json()["key"]), team_id, user_id


def wait_key_works(url: str, key: str, within_s: float = 30, *also: str) -> None:
    """Until ingress knows the new key (it learns keys from the KV bucket): at `url`, and
    at each of `also` (every replica, asked directly, when a front balances them)."""
    deadline = time.monotonic() + within_s
    for where in (url, *also):
        while True:
            # A replica the supervisor is restarting refuses connections for a moment.
            try:
                resp = httpx.get(
                    f"{where}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=5
                )
            except httpx.TransportError as exc:
                answer = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code == 200:
                    break
                answer = str(resp.status_code)
            if time.monotonic() > deadline:
                raise TimeoutError(f"key not accepted by {where} within {within_s:.0f} s: {answer}")
            time.sleep(0.3)


class LoadRun:
    """`threads` clients calling the demo model through `url` until `stop()`."""

    def __init__(
        self,
        url: str,
        record: Path,
        ingress_urls: Sequence[str],
        threads: int = 3,
        pause_s: float = 0.02,
        run_id: str | None = None,
    ) -> None:
        self.url = url
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.threads = threads
        self.pause_s = pause_s
        key, team, user = create_run_entities(url, self.run_id)
        wait_key_works(url, key, 30, *ingress_urls)
        self.key = key
        self.recorder = RunRecorder(
            record, RunHeader(self.run_id, hash_key(key), team, user, tuple(ingress_urls))
        )
        self.record = record
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self.calls = 0

    def _loop(self) -> None:
        body = {"model": "demo", "messages": [{"role": "user", "content": "Hello"}]}
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(timeout=15) as client:
            while not self._stop.is_set():
                try:
                    resp = client.post(
                        f"{self.url}/v1/chat/completions", json=body, headers=headers
                    )
                    self.recorder.call(
                        resp.headers.get(names.HDR_CALL_ID),
                        resp.status_code,
                        resp.headers.get(names.HDR_RESPONSE_COST),
                    )
                except httpx.HTTPError:
                    self.recorder.call(None, 0, None)
                self.calls += 1
                time.sleep(self.pause_s)

    def start(self) -> LoadRun:
        for i in range(self.threads):
            t = threading.Thread(target=self._loop, name=f"load-{i}", daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def fault(self, name: str, resets_counter: bool = False) -> None:
        self.recorder.fault(name, resets_counter)

    def stop(self) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(30)


# One scaled-out stack per test process, shared by the suites that need the same shape
# (the fault suite and the scale-out suite): starting it costs most of their time.
_SHARED: dict[str, Any] = {"stack": None, "users": 0, "root": None}
SHARED_ARGS = ("--cluster", "--replicas", "2")
# Alert types the shared stack sends, each to `<alerts port>/slack/T0/B0/<type>`.
SHARED_ALERT_TYPES = ("llm_exceptions", "outage_alerts", "budget_alerts")
# The shared stack's failing model: only the alert tests call it.
BROKEN_MODEL = "broken"
SHARED_ENV = {
    "TOLLGATE_ALERT_WINDOW_S": "2",
    # A destination that is down for a minute is retried until it is back (the default
    # backoff would reach 30 s between attempts and dead-letter after 8).
    "TOLLGATE_EXPORT_RETRY_ATTEMPTS": "60",
    "TOLLGATE_EXPORT_RETRY_MAX_S": "3",
}


def reserve_port() -> int:
    """A free port below the kernel's ephemeral range, so no client connection takes it
    before the test that serves on it starts."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        if port_is_free(port):
            return port
    raise RuntimeError("no free port in 20000-32000")


def shared_stack_config(alerts_port: int, upstream_port: int) -> dict[str, Any]:
    """The default config plus alerting to a receiver on `alerts_port` and a model whose
    upstream is served on `upstream_port` (by the test that makes it fail)."""
    config = default_config_dict()
    config["model_list"].append(
        {
            "model_name": BROKEN_MODEL,
            "litellm_params": {
                "model": "openai/broken",
                "api_base": f"http://127.0.0.1:{upstream_port}/v1",
                "api_key": "sk-upstream",
                "timeout": 5,
            },
            "model_info": {"id": "broken-1"},
        }
    )
    config["router_settings"] = {"allowed_fails": 1000}
    config["general_settings"].update(
        {
            "alerting": ["slack"],
            "alert_types": list(SHARED_ALERT_TYPES),
            "alert_to_webhook_url": {
                t: f"http://127.0.0.1:{alerts_port}/slack/T0/B0/{t}" for t in SHARED_ALERT_TYPES
            },
        }
    )
    return config


def acquire_shared_stack() -> Stack:
    """Start (first caller) or reuse the shared `up --cluster --replicas 2` stack."""
    if _SHARED["stack"] is None:
        import tempfile

        # Outside pytest's 0700 temp root: PostgreSQL runs as another user and must reach it.
        root = Path(tempfile.mkdtemp(prefix="tollgate-e2e-scaled-"))
        _SHARED["root"] = root
        reserved = {"alerts": reserve_port(), "upstream": reserve_port()}
        config = root / "config.yaml"  # JSON is YAML
        config.write_text(json.dumps(shared_stack_config(reserved["alerts"], reserved["upstream"])))
        env = {**SHARED_ENV, "TOLLGATE_CONFIG": str(config)}
        stack = Stack.up(root / "data", *SHARED_ARGS, env=env)
        stack.reserved = reserved
        _SHARED["stack"] = stack
    _SHARED["users"] += 1
    return _SHARED["stack"]  # type: ignore[no-any-return]


def release_shared_stack(*, now: bool = False) -> None:
    """The last user (or `now`: whoever knows no test needs it any more) stops the shared
    stack and removes its folder."""
    import shutil

    _SHARED["users"] = 0 if now else _SHARED["users"] - 1
    if _SHARED["users"] <= 0 and _SHARED["stack"] is not None:
        _SHARED["stack"].down()
        shutil.rmtree(_SHARED["root"], ignore_errors=True)
        _SHARED["stack"] = None
