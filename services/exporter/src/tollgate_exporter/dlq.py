"""`python -m tollgate_exporter dlq list|replay`: the EXPORT stream's dead letters, for operators.

`list` prints one line per dead-lettered export (`--json`: one JSON document per
line); `replay` re-delivers each to its destination through the exporter's own
routing and sinks and deletes the letters it delivered. Both take `--sink NAME`
and `--request-id ID`. Connection and config come from the service's settings
(`TOLLGATE_NATS_URL`, `TOLLGATE_CONFIG`), sink credentials from the environment.
Exit status: 0, or 1 when a replay left a letter behind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import TextIO

from tollgate_exporter.app import dead_letter_desk
from tollgate_exporter.dead_letters import DeadLetter
from tollgate_exporter.service import DeadLetterDesk
from tollgate_exporter.settings import ExporterSettings
from tollgate_shared.redaction import mask_secrets
from tollgate_shared.runtime import setup_logging


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tollgate_exporter dlq",
        description="List or replay the exporter's dead letters (stream EXPORT).",
    )
    commands = p.add_subparsers(dest="command", required=True)
    for name, text in (
        ("list", "list the dead-lettered exports"),
        ("replay", "re-deliver them; delivered ones are deleted"),
    ):
        c = commands.add_parser(name, help=text)
        c.add_argument("--sink", help="only this sink (langfuse, otel, webhook, ...)")
        c.add_argument("--request-id", help="only the call with this request id")
        if name == "list":
            c.add_argument("--json", action="store_true", help="one JSON document per line")
    return p


def _line(letter: DeadLetter) -> str:
    r = letter.record
    return (
        f"#{letter.seq} {r.occurred_at.isoformat(timespec='seconds')} {r.sink} "
        f"[{r.destination}] source={r.source_subject}@{r.source_stream_seq} "
        f"event={r.source_event_id} request={r.request_id} attempts={r.attempts} "
        f"error={r.error[:200]!r}"
    )


def _document(letter: DeadLetter) -> str:
    doc = {"seq": letter.seq, **letter.record.model_dump(mode="json")}
    return json.dumps(mask_secrets(doc))


async def run(args: argparse.Namespace, desk: DeadLetterDesk, out: TextIO) -> int:
    """Carry out one parsed `dlq` command; the exit status."""
    if args.command == "list":
        letters = await desk.letters(sink=args.sink, request_id=args.request_id)
        for letter in letters:
            out.write((_document(letter) if args.json else _line(letter)) + "\n")
        if not args.json:
            out.write(f"{len(letters)} dead letter(s)\n")
        return 0
    outcomes = await desk.replay(sink=args.sink, request_id=args.request_id)
    for o in outcomes:
        out.write(f"{o.status}: {_line(o.letter)}: {o.detail}\n")
    failed = sum(o.status == "failed" for o in outcomes)
    out.write(f"{len(outcomes) - failed} delivered, {failed} failed\n")
    return 1 if failed else 0


async def _main(args: argparse.Namespace, settings: ExporterSettings) -> int:
    async with dead_letter_desk(settings, settings.load_config()) as desk:
        return await run(args, desk, sys.stdout)


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    settings = ExporterSettings()
    setup_logging(settings.log_level, "exporter")
    return asyncio.run(_main(args, settings))
