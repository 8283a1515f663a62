"""The console at /ui in a real browser (Playwright driving Chromium) against the running system:
sign in, calls appearing in Live and Logs, filters, a request's detail, its session, a key and a
team callback created, the audit diff, and a team key that cannot see another team's rows.

Screenshots of every page are written under this test's tmp folder (`console-shots*`)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.configs import MASTER_KEY, write_config
from support.system import System, running_system
from tollgate_devstack.embedded import StackUrls
from tollgate_shared.state import hash_key

playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[3]
# As the machine's notes say: headless, no sandbox as root, no calls to Google's hosts.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
MASTER = {"authorization": f"Bearer {MASTER_KEY}"}


def chromium() -> Path | None:
    """Debian's Chromium, installed through `./just browser` when missing; None if impossible."""
    if not CHROMIUM.exists() and shutil.which("apt-get"):
        subprocess.run(
            [str(REPO / "just"), "browser"], cwd=REPO, capture_output=True, timeout=600, check=False
        )
    return CHROMIUM if CHROMIUM.exists() else None


@pytest.fixture(scope="module")
def browser_path() -> Path:
    found = chromium()
    if found is None:
        pytest.skip(
            "no Chromium: /usr/bin/chromium is missing and `./just browser` could not install it"
        )
    return found


@pytest.fixture(scope="module")
def system(provisioned: StackUrls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    tmp = tmp_path_factory.mktemp("console-e2e")
    cfg = write_config(tmp / "config.yaml")
    with running_system(provisioned, tmp, cfg, backends=("admin", "ledger", "exporter")) as sys_:
        yield sys_


@pytest.fixture
async def page(browser_path: Path, system: System) -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(browser_path), args=FLAGS)
        context = await browser.new_context(
            base_url=system.ingress_url, viewport={"width": 1366, "height": 900}
        )
        context.set_default_timeout(10_000)
        pg = await context.new_page()
        pg.on("dialog", lambda d: asyncio.ensure_future(d.accept()))
        try:
            yield pg
        finally:
            await context.close()
            await browser.close()


class Shots:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.taken: list[Path] = []

    async def take(self, page: Any, name: str) -> None:
        path = self.folder / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)


async def sign_in(page: Any, key: str) -> None:
    await page.goto("/ui/login")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/ui/logs")


async def chat(http: httpx.AsyncClient, key: str, session: str, text: str, tag: str) -> str:
    r = await http.post(
        "/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={
            "model": "demo",
            "messages": [{"role": "user", "content": text}],
            "metadata": {"session_id": session, "tags": [tag]},
        },
    )
    assert r.status_code == 200, r.text
    return str(r.headers["x-litellm-call-id"])


async def until(probe: Any, what: str, timeout: float = 15) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await probe()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_console_end_to_end(
    page: Any, system: System, tmp_path_factory: pytest.TempPathFactory
) -> None:
    shots = Shots(tmp_path_factory.mktemp("console-shots"))
    tag = uuid.uuid4().hex[:6]
    team_a, team_b = f"ui-a-{tag}", f"ui-b-{tag}"
    async with httpx.AsyncClient(base_url=system.ingress_url, timeout=20) as http:
        r = await http.post(
            "/team/new", headers=MASTER, json={"team_id": team_b, "team_alias": "Team B"}
        )
        assert r.status_code == 200, r.text
        r = await http.post(
            "/key/generate", headers=MASTER, json={"team_id": team_b, "key_alias": f"key-b-{tag}"}
        )
        key_b = r.json()["key"]

        # Sign in with the master key; a team and a key made in the console.
        await sign_in(page, MASTER_KEY)
        await page.goto("/ui/teams")
        await page.get_by_label("Alias").fill("Team A")
        await page.get_by_label("Id").fill(team_a)
        await page.get_by_role("button", name="Create team").click()
        await page.wait_for_url(f"**/ui/teams/{team_a}**")
        await page.get_by_label("Callback", exact=True).fill("langfuse")
        await page.get_by_label("Variables", exact=False).fill(
            "langfuse_public_key=pk-lf-public\nlangfuse_secret_key=sk-lf-very-secret-1234"
        )
        await page.get_by_role("button", name="Add callback").click()
        await page.get_by_text("Callback added.").wait_for()
        team_html = await page.content()
        assert "langfuse" in team_html
        assert "sk-lf-very-secret-1234" not in team_html  # masked, never rendered
        await shots.take(page, "team")

        await page.goto("/ui/keys")
        await page.get_by_label("Alias").fill(f"key-a-{tag}")
        await page.get_by_label("Team").select_option(team_a)
        await page.get_by_role("button", name="Create key").click()
        key_a = (await page.locator("#new-key").inner_text()).strip()
        assert key_a.startswith("sk-")
        await shots.take(page, "key-created")

        # Live: calls stream in as they are made.
        await page.goto("/ui/live")
        await page.locator("#live-state").get_by_text("streaming").wait_for()
        session_a = f"sess-a-{tag}"
        ids_a = [
            await chat(http, key_a, session_a, f"question {n} from A", f"tag-a-{tag}")
            for n in range(2)
        ]
        id_b = await chat(http, key_b, f"sess-b-{tag}", "question from B", f"tag-b-{tag}")
        for rid in (*ids_a, id_b):
            await page.locator("#live").get_by_text(rid[:18]).wait_for()
        await page.get_by_role("button", name="Pause").click()
        await shots.take(page, "live")

        # Logs: the calls appear (the ledger writes them asynchronously).
        async def logged() -> bool:
            r = await http.get("/spend/logs/ui", headers=MASTER, params={"session_id": session_a})
            return r.json()["total"] == 2

        await until(logged, "the spend rows")
        await page.goto("/ui/logs")
        await page.locator("#logs").get_by_text(ids_a[0][:18]).wait_for()
        await shots.take(page, "logs")

        # A filter lands in the URL; the detail links to its session, key and team.
        await page.get_by_label("Session").fill(session_a)
        await page.get_by_role("button", name="Filter").click()
        await page.wait_for_url(f"**session_id={session_a}**")
        assert await page.locator("#logs tbody tr").count() == 2
        await page.locator("#logs").get_by_role("link", name=ids_a[0][:18]).click()
        await page.wait_for_url(f"**/ui/logs/{ids_a[0]}")
        await page.get_by_text("question 0 from A").first.wait_for()
        assert await page.get_by_text("Time to first token").count() == 1
        await shots.take(page, "log-detail")
        await page.get_by_role("link", name=session_a).click()
        await page.wait_for_url(f"**/ui/sessions/{session_a}")
        assert await page.locator(".turn").count() == 2
        await shots.take(page, "session")
        await page.goto("/ui/sessions")
        await shots.take(page, "sessions")

        # Usage charts and the audit diff of the team's callback.
        await page.goto("/ui/usage?group_by=team")
        assert await page.locator("svg.chart").count() == 2
        await page.locator("#totals").get_by_text("Team A").wait_for()
        await shots.take(page, "usage")

        async def audited() -> bool:
            await page.goto(f"/ui/audit?object_id={team_a}")
            return await page.locator("#audit li.card").count() >= 2

        await until(audited, "the team's audit rows")
        audit_html = await page.content()
        assert "sk-lf-very-secret-1234" not in audit_html
        assert await page.locator("#audit table.diff ins").count() >= 1
        await shots.take(page, "audit")
        await page.goto("/ui/models")
        await shots.take(page, "models")
        await page.goto("/ui/users")
        await shots.take(page, "users")

        # A form without its token is refused.
        forged = await page.request.post(f"/ui/keys/{hash_key(key_b)}/block", form={"x": "1"})
        assert forged.status == 403

        # Signed in as team A's key: its own rows only, nothing of team B anywhere.
        await page.get_by_role("button", name="Sign out").click()
        await page.wait_for_url("**/ui/login")
        await sign_in(page, key_a)
        assert await page.locator("#logs tbody tr").count() == 2
        logs_html = await page.content()
        assert id_b[:18] not in logs_html
        assert "Team B" not in logs_html
        await page.goto(f"/ui/logs?key={hash_key(key_b)}")
        assert await page.locator("#logs").get_by_text("No requests match.").count() == 1
        await page.goto(f"/ui/logs?team_id={team_b}")
        assert await page.locator("#logs").get_by_text("No requests match.").count() == 1
        detail_b = await page.goto(f"/ui/logs/{id_b}")
        assert detail_b.status == 404
        sess_b = await page.goto(f"/ui/sessions/sess-b-{tag}")
        assert sess_b.status == 404
        audit = await page.goto("/ui/audit")
        assert audit.status == 403
        await page.goto("/ui/usage?group_by=team")
        usage_html = await page.content()
        assert team_b not in usage_html
        await page.goto("/ui/keys")
        await shots.take(page, "key-scoped-keys")

    shot_dir = os.environ.get("TOLLGATE_CONSOLE_SHOTS")
    if shot_dir:
        Path(shot_dir).mkdir(parents=True, exist_ok=True)
        for path in shots.taken:
            shutil.copy(path, Path(shot_dir) / f"console-{path.name}")
    assert len(shots.taken) >= 10
