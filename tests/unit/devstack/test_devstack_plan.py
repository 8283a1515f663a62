"""The supervisor's pure parts: service environments, port conflicts, what a person reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from tollgate_devstack import plan
from tollgate_devstack.__main__ import parse_args
from tollgate_devstack.supervisor import default_data_dir, find_repo_root

SERVERS = {
    "TOLLGATE_NATS_URL": "nats://127.0.0.1:14222",
    "TOLLGATE_DATABASE_URL": "postgresql://postgres:@/postgres?host=/x/pg",
    "TOLLGATE_REDIS_URL": "redis://127.0.0.1:16379/0",
}


def _spec(name: str) -> plan.ServiceSpec:
    return next(s for s in plan.SERVICES if s.name == name)


def test_five_services_on_consecutive_ports() -> None:
    assert [(s.name, s.port()) for s in plan.SERVICES] == [
        ("ingress", 4000),
        ("admin", 4001),
        ("ledger", 4002),
        ("exporter", 4003),
        ("alerter", 4004),
    ]
    assert [s.port(5000) for s in plan.SERVICES] == [5000, 5001, 5002, 5003, 5004]
    assert [s.name for s in plan.SERVICES if s.migrates] == ["admin", "ledger"]


@pytest.mark.parametrize("spec", plan.SERVICES, ids=lambda s: s.name)
def test_every_service_gets_urls_port_and_forward_targets(spec: plan.ServiceSpec) -> None:
    env = plan.service_env(spec, {"PATH": "/bin"}, SERVERS, Path("/data"))
    for var, url in SERVERS.items():
        assert env[var] == url
    assert env["TOLLGATE_PORT"] == str(spec.port())
    assert env["TOLLGATE_ADMIN_URL"] == "http://127.0.0.1:4001"
    assert env["TOLLGATE_LEDGER_URL"] == "http://127.0.0.1:4002"
    assert env["TOLLGATE_EXPORTER_URL"] == "http://127.0.0.1:4003"
    assert env["TOLLGATE_ALERTER_URL"] == "http://127.0.0.1:4004"
    assert env["TOLLGATE_PUBLIC_URL"] == "http://127.0.0.1:4000"
    assert env["PATH"] == "/bin"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert "TOLLGATE_CONFIG" not in env


def test_base_port_moves_every_port_and_target() -> None:
    env = plan.service_env(_spec("ledger"), {}, SERVERS, Path("/d"), base_port=5100)
    assert env["TOLLGATE_PORT"] == "5102"
    assert env["TOLLGATE_ADMIN_URL"] == "http://127.0.0.1:5101"
    assert env["TOLLGATE_ALERTER_URL"] == "http://127.0.0.1:5104"
    assert env["TOLLGATE_PUBLIC_URL"] == "http://127.0.0.1:5100"


def test_person_settings_pass_through_and_supervisor_settings_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    base = {
        "TOLLGATE_CONFIG": "conf/config.yaml",
        "TOLLGATE_MASTER_KEY": "sk-a-strong-master-key",
        "TOLLGATE_LOG_LEVEL": "DEBUG",
        "TOLLGATE_PORT": "9999",
        "TOLLGATE_NATS_URL": "nats://stale:4222",
    }
    env = plan.service_env(_spec("admin"), base, SERVERS, tmp_path)
    # A relative config path is resolved against where the person ran the command.
    assert env["TOLLGATE_CONFIG"] == str(tmp_path / "conf" / "config.yaml")
    assert env["TOLLGATE_MASTER_KEY"] == "sk-a-strong-master-key"
    assert env["TOLLGATE_LOG_LEVEL"] == "DEBUG"
    assert env["TOLLGATE_PORT"] == "4001"
    assert env["TOLLGATE_NATS_URL"] == SERVERS["TOLLGATE_NATS_URL"]
    assert base["TOLLGATE_PORT"] == "9999", "the caller's mapping is not modified"


def test_ingress_spools_into_the_data_folder_unless_told_otherwise() -> None:
    env = plan.service_env(_spec("ingress"), {}, SERVERS, Path("/data"))
    assert env["TOLLGATE_SPOOL_PATH"] == "/data/ingress-spool.sqlite3"
    given = {"TOLLGATE_SPOOL_PATH": "/var/spool/tg.sqlite3"}
    assert plan.service_env(_spec("ingress"), given, SERVERS, Path("/data"))[
        "TOLLGATE_SPOOL_PATH"
    ] == ("/var/spool/tg.sqlite3")
    assert "TOLLGATE_SPOOL_PATH" not in plan.service_env(_spec("ledger"), {}, SERVERS, Path("/d"))


def test_commands_keep_the_interpreter_whole() -> None:
    python = "/opt/my python/bin/python3"
    assert plan.service_command(python, _spec("exporter")) == [python, "-m", "tollgate_exporter"]
    assert plan.migrate_command(python, "ledger") == [python, "-m", "tollgate_ledger", "migrate"]


def test_port_conflicts_name_port_service_and_occupant() -> None:
    busy = {4000, 4003}
    conflicts = plan.port_conflicts(
        lambda p: p not in busy,
        identify=lambda p: "tollgate's ingress service" if p == 4000 else None,
    )
    assert conflicts == [
        plan.PortConflict(4000, "ingress", "tollgate's ingress service"),
        plan.PortConflict(4003, "exporter", None),
    ]
    message = plan.conflict_message(conflicts)
    assert "port 4000 (for ingress) is already in use by tollgate's ingress service" in message
    assert "port 4003 (for exporter) is already in use\n" in message
    assert "Tollgate looks already up" in message
    assert "4000-4004" in message
    assert "--base-port" in message


def test_no_conflicts_when_every_port_is_free() -> None:
    assert plan.port_conflicts(lambda p: True) == []


def test_foreign_occupant_gets_a_plain_hint() -> None:
    message = plan.conflict_message(
        [plan.PortConflict(5002, "ledger", "an HTTP server (nginx)")], base_port=5000
    )
    assert "Tollgate looks already up" not in message
    assert "stop whatever listens there" in message
    assert "5000-5004" in message


def test_export_lines_are_shell_safe() -> None:
    lines = plan.export_lines(SERVERS)
    assert lines[0] == (
        "export TOLLGATE_DATABASE_URL='postgresql://postgres:@/postgres?host=/x/pg'"
    )
    assert "export TOLLGATE_NATS_URL=nats://127.0.0.1:14222" in lines
    assert len(lines) == 3


def test_banner_shows_urls_and_the_first_curls() -> None:
    text = plan.banner(SERVERS)
    for port in range(4000, 4005):
        assert f"http://127.0.0.1:{port}" in text
    assert (
        'curl http://127.0.0.1:4000/v1/chat/completions -H "Authorization: Bearer sk-1234" '
        '-H "Content-Type: application/json" '
        '-d \'{"model":"demo","messages":[{"role":"user","content":"Hello"}]}\''
    ) in text
    assert 'curl -H "Authorization: Bearer sk-1234" http://127.0.0.1:4000/spend/logs' in text
    assert "TOLLGATE_CONFIG" not in text
    assert "use its model names" in plan.banner(SERVERS, custom_config=True)


def test_data_dir_defaults_to_the_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "services" / "x").mkdir(parents=True)
    (repo / "justfile").write_text("")
    (repo / "pyproject.toml").write_text("")
    assert find_repo_root(repo / "services" / "x") == repo
    assert default_data_dir({}, repo / "services" / "x") == repo / ".data"
    assert default_data_dir({}, tmp_path) == tmp_path / ".data"
    assert default_data_dir({"TOLLGATE_DATA_DIR": str(tmp_path / "d")}, repo) == tmp_path / "d"


def test_command_line() -> None:
    args = parse_args(["up"])
    assert (args.command, args.base_port, args.data_dir) == ("up", 4000, None)
    args = parse_args(["--data-dir", "/tmp/x", "servers", "--provision"])
    assert (args.command, args.provision, args.data_dir) == ("servers", True, Path("/tmp/x"))
    with pytest.raises(SystemExit):
        parse_args([])
