"""`backup` and `restore`: JetStream stream/KV snapshots plus a PostgreSQL dump, in one tar file.

Order makes it consistent: the JetStream snapshots (streams with their durable
consumers' positions, and the KV buckets, which are streams too) are taken
first, then the PostgreSQL dump (one transaction). So every event a consumer
had acknowledged at snapshot time is in the dump; events committed after it
are redelivered on restore, and the ledger's idempotency absorbs them.
Redis holds only rate-limit windows, parallel slots and alert de-duplication
keys, which expire anyway; it is not in the backup.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS
from pydantic import SecretStr

from tollgate_devstack.datadir import DataDir, tollgate_version
from tollgate_devstack.embedded import EmbeddedStack
from tollgate_shared.publishing import connect_nats
from tollgate_shared.settings import NatsAuth

CHUNK = 128 * 1024
FORMAT = 1
# Key, beside the server URLs, of how to connect to NATS (None: as the URL says).
_AUTH = "nats_auth"


def _say(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def pg_binary(name: str) -> str:
    """pg_dump / pg_restore from the pgserver wheel: the same major version as the server."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver._commands import POSTGRES_BIN_PATH  # type: ignore[import-untyped]

    return str(Path(POSTGRES_BIN_PATH) / name)


async def _api(nc: NATS, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    payload = json.dumps(body).encode() if body is not None else b""
    reply = await nc.request(subject, payload, timeout=30)
    answer: dict[str, Any] = json.loads(reply.data or b"{}")
    if answer.get("error"):
        raise RuntimeError(f"{subject}: {answer['error']}")
    return answer


async def stream_names(nc: NATS) -> list[str]:
    names: list[str] = []
    while True:
        page = await _api(nc, "$JS.API.STREAM.NAMES", {"offset": len(names)})
        names += page.get("streams") or []
        if not page.get("streams") or len(names) >= int(page.get("total", 0)):
            return sorted(names)


async def snapshot_stream(nc: NATS, name: str, out: Path) -> dict[str, Any]:
    """The server's own snapshot of one stream (with its consumers) into `out`."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    try:
        meta = await _api(
            nc,
            f"$JS.API.STREAM.SNAPSHOT.{name}",
            {"deliver_subject": inbox, "chunk_size": CHUNK, "no_consumers": False},
        )
        with out.open("wb") as f:
            while True:
                msg = await sub.next_msg(timeout=60)
                if not msg.data:
                    break  # the empty message ends the snapshot
                f.write(msg.data)
                if msg.reply:
                    await nc.publish(msg.reply, b"")  # flow-control ack
    finally:
        await sub.unsubscribe()
    return {"config": meta["config"], "state": meta["state"]}


async def restore_stream(nc: NATS, meta: dict[str, Any], data: Path) -> None:
    name = meta["config"]["name"]
    answer = await _api(nc, f"$JS.API.STREAM.RESTORE.{name}", meta)
    deliver = answer["deliver_subject"]
    with data.open("rb") as f:
        while chunk := f.read(CHUNK):
            await nc.request(deliver, chunk, timeout=30)
    done = await nc.request(deliver, b"", timeout=120)
    result = json.loads(done.data or b"{}")
    if result.get("error"):
        raise RuntimeError(f"restoring stream {name}: {result['error']}")


async def snapshot_jetstream(
    nats_url: str, folder: Path, auth: NatsAuth | None = None
) -> list[str]:
    nc = await connect_nats(nats_url, "tollgate-backup", auth=auth)
    try:
        names = await stream_names(nc)
        for name in names:
            meta = await snapshot_stream(nc, name, folder / f"{name}.snapshot")
            (folder / f"{name}.json").write_text(json.dumps(meta))
        return names
    finally:
        await nc.drain()


async def restore_jetstream(
    nats_url: str, folder: Path, names: list[str], auth: NatsAuth | None = None
) -> None:
    nc = await connect_nats(nats_url, "tollgate-restore", auth=auth)
    try:
        for name in names:
            meta = json.loads((folder / f"{name}.json").read_text())
            await restore_stream(nc, meta, folder / f"{name}.snapshot")
    finally:
        await nc.drain()


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} failed: {done.stderr.decode(errors='replace')}")


def _operator_auth(status: dict[str, Any]) -> NatsAuth | None:
    """The `provision` user of a running stack whose embedded NATS has authorization."""
    users_file = status.get("nats_users_file")
    if not users_file:
        return None
    passwords = json.loads(Path(users_file).read_text())
    return NatsAuth(user="provision", password=SecretStr(passwords["provision"]))


@contextlib.contextmanager
def _servers(data: DataDir, need_redis: bool = False) -> Any:
    """The running stack's servers when it is up, else the embedded ones started for this.

    Yields the URLs and, under `TOLLGATE_NATS_AUTH`, how to connect to its NATS."""
    status = data.read_status() or {}
    servers = status.get("servers") or {}
    if data.running_pid() is not None and servers:
        yield {**servers, _AUTH: _operator_auth(status)}
        return
    stack = EmbeddedStack(data.root, say=True)
    try:
        urls = stack.start(redis_url=None if need_redis else "redis://unused")
        yield {**urls.env(), _AUTH: None}
    finally:
        stack.stop()


def backup(data: DataDir, out: Path | None) -> int:
    if not (data.root / "pg" / "PG_VERSION").exists() and data.running_pid() is None:
        _say(f"nothing to back up: {data.root} holds no PostgreSQL cluster")
        return 1
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = (out or data.root / "backups" / f"tollgate-backup-{stamp}.tar").resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tollgate-backup-") as tmp, _servers(data) as urls:
        folder = Path(tmp)
        (folder / "jetstream").mkdir()
        _say("snapshotting JetStream streams and KV buckets")
        names = asyncio.run(
            snapshot_jetstream(urls["TOLLGATE_NATS_URL"], folder / "jetstream", urls[_AUTH])
        )
        _say("dumping PostgreSQL (one consistent transaction)")
        _run(
            [
                pg_binary("pg_dump"),
                "--format=custom",
                f"--file={folder / 'postgres.dump'}",
                f"--dbname={urls['TOLLGATE_DATABASE_URL']}",
            ]
        )
        manifest = {
            "format": FORMAT,
            "tollgate_version": data.written_by() or tollgate_version(),
            "taken_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "streams": names,
        }
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
        with tarfile.open(out, "w") as tar:
            for path in sorted(folder.rglob("*")):
                tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    size = out.stat().st_size
    _say(
        f"backup written: {out} ({size / 1e6:.1f} MB, {len(names)} streams, "
        f"{time.monotonic() - started:.1f} s)"
    )
    print(out)
    return 0


def restore(data: DataDir, archive: Path) -> int:
    if data.running_pid() is not None:
        _say(f"Tollgate is running on {data.root}; restore goes into a fresh data folder")
        return 1
    if (data.root / "pg" / "PG_VERSION").exists() or (data.root / "nats" / "js").exists():
        _say(
            f"{data.root} already holds data; restore into a fresh data folder "
            "(--data-dir or TOLLGATE_DATA_DIR), so nothing is overwritten"
        )
        return 1
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tollgate-restore-") as tmp:
        folder = Path(tmp)
        with tarfile.open(archive) as tar:
            tar.extractall(folder, filter="data")
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest.get("format") != FORMAT:
            _say(f"unknown backup format {manifest.get('format')!r} (this Tollgate reads {FORMAT})")
            return 1
        try:
            with _servers(data) as urls:
                _say(f"restoring {len(manifest['streams'])} JetStream streams and buckets")
                asyncio.run(
                    restore_jetstream(
                        urls["TOLLGATE_NATS_URL"],
                        folder / "jetstream",
                        manifest["streams"],
                        urls[_AUTH],
                    )
                )
                _say("restoring PostgreSQL")
                _run(
                    [
                        pg_binary("pg_restore"),
                        "--exit-on-error",
                        "--single-transaction",
                        "--no-owner",
                        f"--dbname={urls['TOLLGATE_DATABASE_URL']}",
                        str(folder / "postgres.dump"),
                    ]
                )
        except Exception as exc:
            _say(f"restore failed: {exc}")
            return 1
    data.mark(manifest["tollgate_version"])
    shutil.rmtree(data.run, ignore_errors=True)
    _say(
        f"restored {archive} into {data.root} in {time.monotonic() - started:.1f} s "
        f"(taken {manifest['taken_at']} by Tollgate {manifest['tollgate_version']}); "
        "`./just up` starts on it and migrates it forward if needed"
    )
    return 0
