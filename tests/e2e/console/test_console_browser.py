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

from support.alert_receivers import AlertReceiver, alert_receiver
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
SLACK = "/slack/T0/B0/console"
PHONE = {"width": 390, "height": 844}
# The outermost elements that stick out past the viewport's right edge (for the message).
WIDEST = """Array.from(document.querySelectorAll('body *'))
  .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1
    && !e.closest('.scroll'))
  .slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + e.id).join(', ')"""


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
def receiver() -> Iterator[AlertReceiver]:
    with alert_receiver() as found:
        yield found


@pytest.fixture(scope="module")
def system(
    provisioned: StackUrls, tmp_path_factory: pytest.TempPathFactory, receiver: AlertReceiver
) -> Iterator[System]:
    tmp = tmp_path_factory.mktemp("console-e2e")
    cfg = write_config(tmp / "config.yaml", general_settings={"alerting": ["slack"]})
    env = {
        "SLACK_WEBHOOK_URL": receiver.url(SLACK),
        "TOLLGATE_REDIS_PREFIX": f"e2e-console:{tmp.name}",
    }
    backends = ("admin", "ledger", "exporter", "alerter")
    with running_system(provisioned, tmp, cfg, env, backends=backends) as sys_:
        yield sys_


@pytest.fixture
def viewport() -> dict[str, int]:
    return {"width": 1366, "height": 900}


@pytest.fixture
async def page(browser_path: Path, system: System, viewport: dict[str, int]) -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(browser_path), args=FLAGS)
        context = await browser.new_context(base_url=system.ingress_url, viewport=viewport)
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
    # The redirect itself is what signing in does; the logs page's own loading is checked by
    # what the test reads from it next. 30 s: a loaded CI machine took over 10 once.
    await page.wait_for_url("**/ui/logs", wait_until="commit", timeout=30_000)


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


def copy_shots(shots: Shots, prefix: str) -> None:
    shot_dir = os.environ.get("TOLLGATE_CONSOLE_SHOTS")
    if shot_dir:
        Path(shot_dir).mkdir(parents=True, exist_ok=True)
        for path in shots.taken:
            shutil.copy(path, Path(shot_dir) / f"{prefix}-{path.name}")


async def field_error(page: Any, input_id: str) -> str:
    """The message shown next to a form field (and tied to it for screen readers)."""
    field = page.locator(f"#{input_id}")
    assert await field.get_attribute("aria-invalid") == "true"
    assert f"{input_id}-error" in (await field.get_attribute("aria-describedby") or "")
    return str(await page.locator(f"#{input_id}-error").inner_text())


async def test_console_edit_forms_budgets_and_alert_test(
    page: Any, system: System, receiver: AlertReceiver, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Keys, teams (with members), users and models edited in their forms, a refused value
    shown next to its field; budget meters on Usage; the alerting test button."""
    shots = Shots(tmp_path_factory.mktemp("console-shots-edit"))
    tag = uuid.uuid4().hex[:6]
    team, user = f"ui-e-{tag}", f"ui-user-{tag}"
    async with httpx.AsyncClient(base_url=system.ingress_url, timeout=20) as http:
        r = await http.post(
            "/team/new", headers=MASTER, json={"team_id": team, "team_alias": "Edit"}
        )
        assert r.status_code == 200, r.text
        r = await http.post(
            "/user/new", headers=MASTER, json={"user_id": user, "auto_create_key": False}
        )
        assert r.status_code == 200, r.text
        r = await http.post(
            "/key/generate", headers=MASTER, json={"team_id": team, "key_alias": f"edit-{tag}"}
        )
        key, token = r.json()["key"], hash_key(r.json()["key"])
        await sign_in(page, MASTER_KEY)

        # Key: a period admin refuses comes back next to its field, everything typed kept.
        await page.goto(f"/ui/keys/{token}")
        await page.get_by_role("link", name="Edit").click()
        await page.wait_for_url(f"**/ui/keys/{token}/edit")
        await page.get_by_label("Max budget (USD)").fill("5")
        await page.get_by_label("Budget period").fill("soon")
        await page.get_by_label("RPM limit").fill("many")
        await page.get_by_role("button", name="Save").click()
        assert "whole number" in await field_error(page, "f-rpm-limit")
        assert await page.get_by_label("Max budget (USD)").input_value() == "5"
        await page.get_by_label("RPM limit").fill("60")
        await page.get_by_role("button", name="Save").click()
        assert "budget_duration" in await field_error(page, "f-budget-duration")
        await shots.take(page, "key-edit-error")
        await page.get_by_label("Budget period").fill("30d")
        await page.get_by_label("Max parallel requests").fill("4")
        await page.get_by_label("Metadata (JSON)").fill('{"env": "ui"}')
        await page.get_by_role("button", name="Save").click()
        await page.get_by_text("Key updated.").wait_for()
        info = (await http.get("/key/info", headers=MASTER, params={"key": token})).json()["info"]
        assert (info["max_budget"], info["budget_duration"], info["rpm_limit"]) == (5, "30d", 60)
        assert (info["max_parallel_requests"], info["metadata"]["env"]) == (4, "ui")

        # Team: budget and limits, then members added (one refused) and removed.
        await page.goto(f"/ui/teams/{team}/edit")
        await page.get_by_label("Max budget (USD)").fill("10")
        await page.get_by_label("Budget period").fill("1mo")
        await page.get_by_label("TPM limit").fill("1000")
        await page.get_by_role("button", name="Save").click()
        await page.get_by_text("Team updated.").wait_for()
        await page.get_by_label("Member user id").fill(user)
        await page.get_by_label("Member role").select_option("admin")
        await page.get_by_role("button", name="Add member").click()
        await page.get_by_text("Member added.").wait_for()
        assert await page.locator("#members").get_by_text(user).count() == 1
        await page.get_by_label("Member user id").fill("bad id!")
        await page.get_by_role("button", name="Add member").click()
        await page.locator("#m-user_id-error").wait_for()
        assert await page.get_by_label("Member user id").input_value() == "bad id!"
        await shots.take(page, "team-members")
        await page.get_by_role("button", name=f"Remove {user}").click()
        await page.get_by_text("Member removed.").wait_for()
        assert await page.locator("#members").get_by_text(user).count() == 0
        t = (await http.get("/team/info", headers=MASTER, params={"team_id": team})).json()
        assert (t["team_info"]["max_budget"], t["team_info"]["tpm_limit"]) == (10, 1000)

        # User: role and budget.
        await page.goto("/ui/users")
        await page.get_by_role("link", name=f"Edit {user}").click()
        await page.get_by_label("Role").select_option("internal_user_viewer")
        await page.get_by_label("Max budget (USD)").fill("2.5")
        await page.get_by_role("button", name="Save").click()
        await page.get_by_text(f"User {user} updated.").wait_for()
        u = (await http.get("/user/info", headers=MASTER, params={"user_id": user})).json()
        assert (u["user_info"]["user_role"], u["user_info"]["max_budget"]) == (
            "internal_user_viewer",
            2.5,
        )

        # Models: add, edit, delete through /model/new|update|delete.
        name = f"ui-model-{tag}"
        await page.goto("/ui/models")
        await page.get_by_role("link", name="Add a model").click()
        await page.get_by_role("button", name="Add model").click()
        assert await field_error(page, "f-model-name") == "required"
        await page.get_by_label("Model name").fill(name)
        await page.get_by_label("Upstream model").fill("openai/gpt-4o-mini")
        await page.get_by_label("API key").fill("sk-upstream-secret-4321")
        await page.get_by_label("RPM", exact=True).fill("30")
        await page.get_by_role("button", name="Add model").click()
        await page.get_by_text("Model added.").wait_for()
        assert "sk-upstream-secret-4321" not in await page.content()
        await page.get_by_role("link", name=f"Edit {name}").click()
        assert await page.get_by_label("API key").input_value() == ""
        await page.get_by_label("RPM", exact=True).fill("45")
        await page.get_by_role("button", name="Save").click()
        await page.get_by_text("Model updated.").wait_for()
        models = (await http.get("/model/info", headers=MASTER)).json()["data"]
        mine = [m for m in models if m["model_name"] == name]
        assert len(mine) == 1
        assert mine[0]["litellm_params"]["rpm"] == 45
        await shots.take(page, "models-edited")
        await page.get_by_role("link", name=f"Edit {name}").click()
        await page.get_by_role("button", name="Delete").click()
        await page.get_by_text("Model deleted.").wait_for()
        assert await page.locator("#models").get_by_text(name).count() == 0

        # Budgets on Usage: the key's and the team's meters with their periods.
        await chat(http, key, f"sess-e-{tag}", "spend something", f"tag-e-{tag}")
        await page.goto("/ui/usage?group_by=team")
        for label in (f"key edit-{tag}", "team Edit"):
            row = page.locator("#budgets tr", has_text=label)
            await row.wait_for()
            assert await row.locator("meter").count() == 1
        assert await page.locator("#budgets").get_by_text("30d").count() >= 1
        await shots.take(page, "usage-budgets")

        # The alerting test button reaches the Slack-compatible webhook.
        await page.goto("/ui/teams")
        await page.get_by_role("button", name="Send a test alert").click()
        await page.get_by_text("Alerting test:").wait_for()
        assert await receiver.wait_for(SLACK, lambda r: "test slack alert" in r.text)
        await shots.take(page, "alert-test")
    copy_shots(shots, "console-edit")
    assert len(shots.taken) == 5


@pytest.mark.parametrize("viewport", [PHONE], ids=["phone"])
async def test_console_on_a_phone_and_responses_chain_as_session(
    page: Any, system: System, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """At a phone's width nothing but the tables scrolls sideways; a Responses API chain
    (`previous_response_id`) is one conversation on the Sessions page."""
    shots = Shots(tmp_path_factory.mktemp("console-shots-phone"))
    auth = {"authorization": f"Bearer {MASTER_KEY}"}
    async with httpx.AsyncClient(base_url=system.ingress_url, timeout=20) as http:
        first = await http.post(
            "/v1/responses", headers=auth, json={"model": "demo", "input": "chain turn one"}
        )
        assert first.status_code == 200, first.text
        chain = first.json()["id"]
        second = await http.post(
            "/v1/responses",
            headers=auth,
            json={"model": "demo", "input": "chain turn two", "previous_response_id": chain},
        )
        assert second.status_code == 200, second.text

        async def logged() -> bool:
            r = await http.get("/spend/logs/ui", headers=MASTER, params={"session_id": chain})
            return r.json()["total"] == 2

        await until(logged, "the chain's spend rows")

    await sign_in(page, MASTER_KEY)
    for path, name in (
        ("/ui/logs", "phone-logs"),
        (f"/ui/sessions/{chain}", "phone-session"),
        ("/ui/usage", "phone-usage"),
        ("/ui/keys", "phone-keys"),
    ):
        await page.goto(path)
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        wide = await page.evaluate(WIDEST) if overflow > 1 else ""
        assert overflow <= 1, f"{path} is {overflow}px wider than a phone: {wide}"
        await shots.take(page, name)

    await page.goto(f"/ui/sessions/{chain}")
    turns = page.locator(".turn")
    assert await turns.count() == 2
    assert "chain turn one" in await turns.nth(0).inner_text()
    assert "chain turn two" in await turns.nth(1).inner_text()
    copy_shots(shots, "console")
