"""`helm test`: one call through ingress, then its spend row read back (stdlib only)."""

import json
import os
import sys
import time
import urllib.parse
import urllib.request

BASE = os.environ["TOLLGATE_TEST_BASE_URL"]
KEY = os.environ["TOLLGATE_MASTER_KEY"]
MODEL = os.environ.get("TOLLGATE_TEST_MODEL", "demo")
TIMEOUT_S = float(os.environ.get("TOLLGATE_TEST_TIMEOUT_S", "60"))
HEADERS = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


def request(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, headers=HEADERS, method=method)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.headers, json.loads(resp.read() or b"null")


def main():
    message = {"role": "user", "content": "helm test"}
    headers, answer = request(
        "POST", "/v1/chat/completions", {"model": MODEL, "messages": [message]}
    )
    call_id = headers.get("x-litellm-call-id") or answer.get("id")
    print(f"call {call_id}: {answer['choices'][0]['message']['content']!r}")
    query = urllib.parse.urlencode({"request_id": call_id})
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        _, rows = request("GET", f"/spend/logs?{query}")
        if rows:
            row = rows[0]
            print(f"spend row {row['request_id']}: spend={row['spend']} status={row.get('status')}")
            return 0
        time.sleep(1)
    print(f"no spend row for {call_id} after {TIMEOUT_S:.0f} s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
