"""Command line: `python -m tollgate_devstack up|servers|status|logs|down|backup|restore`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tollgate_devstack import backups, operate, plan, supervisor
from tollgate_devstack.datadir import DataDir
from tollgate_devstack.restarts import FIRST_DELAY_S


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tollgate_devstack",
        description="Run Tollgate on one machine with embedded NATS, PostgreSQL and Redis.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the servers keep their data (default: TOLLGATE_DATA_DIR or <repo>/.data)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="servers, provisioning, migrations and all five services")
    up.add_argument(
        "--base-port",
        type=int,
        default=plan.BASE_PORT,
        help="ingress port; the other services take the next four (default 4000)",
    )
    up.add_argument(
        "--health-timeout",
        type=float,
        default=180.0,
        help="seconds to wait for every /health to answer 200",
    )
    up.add_argument(
        "--detach",
        action="store_true",
        help="run in the background (pid file and logs under the data folder)",
    )
    up.add_argument(
        "--cluster",
        action="store_true",
        help="NATS as a three-node JetStream cluster on loopback (streams and buckets at R3)",
    )
    up.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="run N replicas of every service; ingress's behind a round-robin front on the "
        "base port (default 1)",
    )
    up.add_argument(
        "--restart-backoff",
        type=float,
        default=FIRST_DELAY_S,
        help="seconds before the first restart of a unit that exited; doubles per exit up "
        "to 30 s (default 1)",
    )
    up.add_argument("--detached-child", action="store_true", help=argparse.SUPPRESS)
    status = sub.add_parser("status", help="each service and server: health, uptime, restarts")
    status.add_argument("--json", action="store_true", help="machine-readable")
    logs = sub.add_parser("logs", help="follow the logs (of one service or server)")
    logs.add_argument("name", nargs="?", default=None, help="service, server or 'supervisor'")
    logs.add_argument("--no-follow", action="store_true", help="print and exit")
    logs.add_argument("-n", "--lines", type=int, default=50, help="lines of history to show")
    sub.add_parser("down", help="stop a detached stack (ordered, bounded)")
    backup = sub.add_parser("backup", help="PostgreSQL dump + JetStream snapshots into one file")
    backup.add_argument("--out", type=Path, default=None, help="file to write")
    restore = sub.add_parser("restore", help="restore a backup file into a fresh data folder")
    restore.add_argument("file", type=Path, help="a file written by `backup`")
    rec = sub.add_parser(
        "reconcile", help="compare a load run's record with the ledger, totals and metrics"
    )
    rec.add_argument("record", type=Path, help="the run record written by the load generator")
    rec.add_argument(
        "--database-url", default=None, help="default: TOLLGATE_DATABASE_URL or the running stack's"
    )
    rec.add_argument(
        "--wait", type=float, default=60.0, help="seconds to wait for the ledger to catch up"
    )
    rec.add_argument("--json", action="store_true", help="machine-readable")
    servers = sub.add_parser("servers", help="only NATS, PostgreSQL and Redis; prints exports")
    servers.add_argument(
        "--provision", action="store_true", help="also create streams, consumers and buckets"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data_dir = (args.data_dir or supervisor.default_data_dir(os.environ, Path.cwd())).resolve()
    data = DataDir(data_dir)
    if args.command == "up" and args.detach:
        forwarded = [
            "--base-port",
            str(args.base_port),
            "--health-timeout",
            str(args.health_timeout),
            "--replicas",
            str(args.replicas),
            "--restart-backoff",
            str(args.restart_backoff),
            *(["--cluster"] if args.cluster else []),
        ]
        return operate.detach(data, forwarded, args.health_timeout + 60)
    if args.command == "up":
        return supervisor.up(
            data_dir,
            args.base_port,
            args.health_timeout,
            args.detached_child,
            args.cluster,
            args.replicas,
            args.restart_backoff,
        )
    if args.command == "reconcile":
        from tollgate_devstack import reconcile

        return reconcile.main(data, args.record, args.database_url, args.wait, args.json)
    if args.command == "status":
        return operate.status(data, args.json)
    if args.command == "logs":
        return operate.logs(data, args.name, not args.no_follow, args.lines)
    if args.command == "down":
        return operate.down(data)
    if args.command == "backup":
        return backups.backup(data, args.out)
    if args.command == "restore":
        return backups.restore(data, args.file)
    return supervisor.servers(data_dir, args.provision)


if __name__ == "__main__":
    sys.exit(main())
