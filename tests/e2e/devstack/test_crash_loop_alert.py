"""`./just up` with a service that cannot start: the supervisor sees the crash loop and the
alerter sends exactly one `service_crash_loop` message to a Slack-compatible webhook.

The exporter is given an invalid setting (`TOLLGATE_EXPORT_BATCH_SIZE=0`, below its
minimum of 1): it exits at every start, as it would on a real mistake in the environment
file, while the other four services run. The supervisor's first restart waits 0.2 s here
(`--restart-backoff`, 1 s by default), so five exits take 0.2 + 0.4 + 0.8 + 1.6 s of backoff
plus five start-up attempts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from support.alert_receivers import AlertReceiver, alert_receiver
from tollgate_devstack.embedded import free_port, port_is_free
from tollgate_shared.config import default_config_dict

URL_VARS = ("TOLLGATE_NATS_URL", "TOLLGATE_DATABASE_URL", "TOLLGATE_REDIS_URL")
HOOK = "/slack/T000/B000/crash-loops"
# Stack start, five failed starts of the exporter and the alert, on a loaded 2-core machine.
ALERT_WITHIN_S = 150.0


def _free_base_port() -> int:
    for _ in range(50):
        base = free_port()
        if base + 4 < 65536 and all(port_is_free(base + i) for i in range(1, 5)):
            return base
    raise RuntimeError("no five consecutive free ports")


@pytest.fixture
def data_root() -> Iterator[Path]:
    """Outside pytest's 0700 temp root: PostgreSQL runs as another user and must reach it."""
    root = Path(tempfile.mkdtemp(prefix="tollgate-e2e-crashloop-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def receiver() -> Iterator[AlertReceiver]:
    with alert_receiver() as r:
        yield r


def _units(data_dir: Path) -> dict[str, dict[str, object]]:
    try:
        status = json.loads((data_dir / "run" / "status.json").read_text())
    except (OSError, ValueError):
        return {}
    return {u["name"]: u for u in status.get("units", [])}


def test_a_crash_looping_service_raises_exactly_one_alert(
    data_root: Path, receiver: AlertReceiver
) -> None:
    config = default_config_dict()
    config["general_settings"].update(
        {
            "alerting": ["slack"],
            "alert_types": ["service_crash_loop"],
            "alert_to_webhook_url": {"service_crash_loop": receiver.url(HOOK)},
        }
    )
    config_path = data_root / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k not in URL_VARS}
    env.update(
        {
            "TOLLGATE_CONFIG": str(config_path),
            "TOLLGATE_EXPORT_BATCH_SIZE": "0",  # invalid: the exporter refuses to start
            "TOLLGATE_ALERT_WINDOW_S": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    data_dir = data_root / "data"
    out = (data_root / "up.log").open("w")
    cmd = [sys.executable, "-m", "tollgate_devstack", "--data-dir", str(data_dir), "up"]
    up = subprocess.Popen(
        [
            *cmd,
            "--base-port",
            str(_free_base_port()),
            "--health-timeout",
            "600",
            "--restart-backoff",
            "0.2",
        ],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    started = time.monotonic()
    try:
        deadline = started + ALERT_WITHIN_S
        while time.monotonic() < deadline and not receiver.texts(HOOK, "exporter"):
            assert up.poll() is None, (data_root / "up.log").read_text()[-6000:]
            time.sleep(0.25)
        alerted_after = time.monotonic() - started
        texts = receiver.texts(HOOK, "exporter")
        assert texts, (
            f"no alert within {ALERT_WITHIN_S:.0f} s:\n"
            + (data_root / "up.log").read_text()[-6000:]
        )
        print(f"alert {alerted_after:.1f} s after `up` started")
        # It keeps being retried; further exits of the same loop raise no second alert.
        time.sleep(3.0)  # the status file is rewritten every second
        assert _units(data_dir)["exporter"]["crash_loop"] is True
        texts = receiver.texts(HOOK, "exporter")
        assert len(texts) == 1, texts
        assert "Crash loop: the service `exporter` exited 5 times within 120s" in texts[0]
        assert "Level: `High`" in texts[0]
        assert str(data_dir / "logs" / "exporter.log") in texts[0]
        # Nothing else crash-looped: the other services kept running.
        others = {n: u for n, u in _units(data_dir).items() if n != "exporter"}
        assert all(u["state"] == "running" and not u["crash_loop"] for u in others.values())
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGTERM)
            try:
                up.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
                up.wait(10)
        out.close()
        shutil.copy(data_root / "up.log", Path(tempfile.gettempdir()) / "crash-loop-e2e-up.log")
