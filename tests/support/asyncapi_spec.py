"""The AsyncAPI specification's JSON Schema, from the npm package `@asyncapi/specs`.

Fetched once with `npm pack` into the user's tool cache (`support.tool_cache`); None when npm is not
installed (a machine with only Python), so the test that needs it can say so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from typing import Any

from support.tool_cache import tool_cache

SPECS_PACKAGE = "@asyncapi/specs@6.11.1"
CACHE = tool_cache() / "asyncapi-specs"


def asyncapi_schema(version: str) -> dict[str, Any] | None:
    target = CACHE / f"{version}-without-$id.json"
    if not target.exists():
        npm = shutil.which("npm")
        if npm is None:
            return None
        CACHE.mkdir(parents=True, exist_ok=True)
        out = subprocess.run(
            [npm, "pack", SPECS_PACKAGE, "--silent", "--pack-destination", str(CACHE)],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        archive = CACHE / out.stdout.strip().splitlines()[-1]
        with tarfile.open(archive) as tar:
            member = tar.extractfile(f"package/schemas/{version}-without-$id.json")
            if member is None:
                raise FileNotFoundError(f"{SPECS_PACKAGE} has no schema for {version}")
            target.write_bytes(member.read())
        archive.unlink()
    schema: dict[str, Any] = json.loads(target.read_text())
    return schema
