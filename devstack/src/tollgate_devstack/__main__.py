"""Command line of the dev stack: `python -m tollgate_devstack up|servers`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tollgate_devstack import plan, supervisor


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
    servers = sub.add_parser("servers", help="only NATS, PostgreSQL and Redis; prints exports")
    servers.add_argument(
        "--provision", action="store_true", help="also create streams, consumers and buckets"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data_dir = (args.data_dir or supervisor.default_data_dir(os.environ, Path.cwd())).resolve()
    if args.command == "up":
        return supervisor.up(data_dir, args.base_port, args.health_timeout)
    return supervisor.servers(data_dir, args.provision)


if __name__ == "__main__":
    sys.exit(main())
