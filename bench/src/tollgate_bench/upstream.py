"""The fixed-response upstream: nginx when installed, else a small uvicorn app (own process)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tollgate_bench import bodies
from tollgate_bench.processes import Proc, start_process, wait_http
from tollgate_devstack.embedded import free_port

CHAT_PATH = "/v1/chat/completions"
STREAM_PATH = "/stream/v1/chat/completions"
# Export and alert destinations of the whole-box run: answers 200 and keeps nothing.
DISCARD_PATH = "/discard"


@dataclass
class Upstream:
    kind: str  # "nginx" or "python"
    port: int
    proc: Proc

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def stream_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream/v1"

    @property
    def chat_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{CHAT_PATH}"

    @property
    def stream_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{STREAM_PATH}"


def _nginx_string(body: bytes) -> str:
    """A single-quoted nginx string literal: no variables, newlines as escapes."""
    text = body.decode()
    if "$" in text or "'" in text or "\\" in text:
        raise ValueError("the fixed body must not contain $, ' or backslashes")
    return "'" + text.replace("\n", "\\n") + "'"


def nginx_conf(work: Path, port: int) -> str:
    tmp = work / "nginx-tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    temp_paths = "\n".join(
        f"    {kind}_temp_path {tmp / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""# Written by tollgate_bench: one worker answering fixed bodies.
worker_processes 1;
daemon off;
master_process off;
pid {work / "nginx.pid"};
error_log {work / "nginx-error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{temp_paths}
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = {CHAT_PATH} {{
            default_type application/json;
            return 200 {_nginx_string(bodies.completion())};
        }}
        location = {STREAM_PATH} {{
            default_type text/event-stream;
            return 200 {_nginx_string(bodies.sse_stream())};
        }}
        location = /health {{ return 200 'ok'; }}
        location = {DISCARD_PATH} {{ return 200 '{{}}'; }}
    }}
}}
"""


def start_upstream(work: Path, use_nginx: bool, cpus: set[int] | None) -> Upstream:
    port = free_port()
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if use_nginx and nginx:
        conf = work / "nginx.conf"
        conf.write_text(nginx_conf(work, port))
        check = subprocess.run(
            [nginx, "-t", "-q", "-c", str(conf)], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise RuntimeError(f"nginx rejected its config: {check.stderr.strip()}")
        proc = start_process("nginx", [nginx, "-c", str(conf)], work, {}, cpus)
        kind = "nginx"
    else:
        cmd = [sys.executable, "-m", "tollgate_bench.pyupstream", str(port)]
        proc = start_process("pyupstream", cmd, work, {}, cpus)
        kind = "python"
    wait_http(proc, f"http://127.0.0.1:{port}/health", 20)
    return Upstream(kind, port, proc)
