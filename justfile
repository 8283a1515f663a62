# Tollgate: one entry point for everything a person does. Run through ./just.
set shell := ["bash", "-euo", "pipefail", "-c"]
set dotenv-load := false

export UV_PYTHON_DOWNLOADS := "never"
export UV_PYTHON_PREFERENCE := "only-system"
export PYTHONUNBUFFERED := "1"

# Downloaded test tools that are not Python packages (Azurite, the AsyncAPI schema): kept per
# user like uv's and npm's caches, so a fresh checkout does not fetch them again.
tool_cache := env_var_or_default("TOLLGATE_TOOL_CACHE", env_var_or_default("XDG_CACHE_HOME", env_var("HOME") / ".cache") / "tollgate")

# list the recipes
default:
    @just --list

# install the workspace into .venv (locked versions)
sync:
    @echo "==> syncing .venv from uv.lock" >&2
    uv sync --all-packages --locked --quiet

# bring the whole system up: embedded NATS, PostgreSQL, Redis and all five services
up *ARGS: sync
    uv run --no-sync python -m tollgate_devstack up {{ARGS}}

# run the whole test suite (unit, contract, integration, e2e)
test *ARGS: sync
    #!/usr/bin/env bash
    set -uo pipefail
    if [ -n "{{ARGS}}" ]; then exec uv run --no-sync pytest {{ARGS}}; fi
    # Unit, contract and integration tests in parallel workers (one file per worker at a time,
    # each worker with its own embedded servers), then the e2e tests one at a time: each
    # starts whole systems of processes, and timing checks need the cores to themselves.
    uv run --no-sync pytest -m "not e2e" --numprocesses=auto --maxprocesses=4 --dist=loadfile
    first=$?
    uv run --no-sync pytest -m e2e
    second=$?
    if [ "$first" -ne 0 ] || [ "$second" -ne 0 ]; then
        echo "tests failed: unit/contract/integration exit $first, e2e exit $second" >&2
        exit 1
    fi

# only the fast tiers
test-fast *ARGS: sync
    uv run --no-sync pytest -m "unit or contract" {{ARGS}}

# format check, lint, types, architecture contracts
lint: sync
    uv run --no-sync ruff format --check .
    uv run --no-sync ruff check .
    uv run --no-sync mypy shared/src devstack/src services/ingress/src services/ledger/src services/exporter/src services/alerter/src services/admin/src bench/src
    uv run --no-sync lint-imports

# apply formatting and autofixes
fmt: sync
    uv run --no-sync ruff format .
    uv run --no-sync ruff check --fix .

# create or update streams, consumers and buckets (TOLLGATE_NATS_URL)
provision: sync
    uv run --no-sync python -m tollgate_shared.provision

# apply every service's migrations (TOLLGATE_DATABASE_URL)
migrate: sync
    uv run --no-sync python -m tollgate_ledger migrate
    uv run --no-sync python -m tollgate_admin migrate

# replay the streams into fresh ledger tables and compare totals
rebuild: sync
    uv run --no-sync python -m tollgate_ledger rebuild

# rewrite the checked-in JSON Schema snapshots of the events and KV states (after a deliberate change)
snapshot-schemas: sync
    uv run --no-sync python -m tollgate_shared.schemas write

# write the AsyncAPI event catalog to docs/asyncapi.json
asyncapi: sync
    uv run --no-sync python -m tollgate_shared.catalog docs/asyncapi.json

# write the architecture map (event -> producer -> consumers -> tables -> modules) to docs/architecture.md
architecture: sync
    uv run --no-sync python -m tollgate_shared.architecture docs/architecture.md

# export dead letters: `just dlq list`, `just dlq replay [--sink NAME] [--request-id ID]`
dlq *ARGS: sync
    uv run --no-sync python -m tollgate_exporter dlq {{ARGS}}

# benchmarks: gateway (pinned, and the whole box unpinned) beside the bare upstream and LiteLLM, ledger beside raw COPY, lag at 1,000 req/s (~25 min)
bench *ARGS: sync
    bash bench/prepare.sh
    uv run --no-sync python -m tollgate_bench --size full {{ARGS}}
    @echo "==> each provider adapter's added CPU per call (issue 19)"
    cd tests && uv run --no-sync python -m support.fake_providers.bench

# the same benchmarks at small sizes (about four minutes)
bench-quick *ARGS: sync
    bash bench/prepare.sh
    uv run --no-sync python -m tollgate_bench --size quick {{ARGS}}

# each service and server of a running stack: health, uptime, restarts, consumer lag, spool depth
status *ARGS: sync
    uv run --no-sync python -m tollgate_devstack status {{ARGS}}

# follow the logs of a running stack: `just logs` (supervisor + services) or `just logs ledger`
logs *ARGS: sync
    uv run --no-sync python -m tollgate_devstack logs {{ARGS}}

# stop a stack started with `just up --detach` (ingress, then the consumers, then the servers)
down: sync
    uv run --no-sync python -m tollgate_devstack down

# JetStream snapshots + PostgreSQL dump of the data folder into one file: `just backup [--out F]`
backup *ARGS: sync
    uv run --no-sync python -m tollgate_devstack backup {{ARGS}}

# restore a backup into a fresh data folder: `TOLLGATE_DATA_DIR=/new just restore FILE`
restore FILE: sync
    uv run --no-sync python -m tollgate_devstack restore {{FILE}}

# kill -9 every service and server under load, one after another (about 3 minutes)
test-supervision *ARGS: sync
    TOLLGATE_SUPERVISION_LONG=1 uv run --no-sync pytest tests/e2e/devstack -s {{ARGS}}

# backup size and restore time for N spend rows (default 1,000,000; a few minutes)
backup-bench *ARGS: sync
    uv run --no-sync python -m tollgate_devstack.backup_bench {{ARGS}}

# install the test emulators not on PyPI (Azurite, from npm) into the user's tool cache when missing
emulators DIR=(tool_cache / "azurite"):
    @test -x "{{DIR}}/node_modules/.bin/azurite-blob" || { command -v npm >/dev/null || { echo "npm is needed for Azurite (apt-get install npm)" >&2; exit 1; }; npm install --prefix "{{DIR}}" --no-audit --no-fund --loglevel=error azurite@3; }

# Chromium for the console's browser tests: Debian's package when /usr/bin/chromium is missing
browser:
    @if [ -x /usr/bin/chromium ]; then echo "chromium: $(/usr/bin/chromium --version)"; else apt-get install -y --no-install-recommends chromium || (apt-get update && apt-get install -y --no-install-recommends chromium); fi

# the console's Logs page p95 with 1,000,000 spend rows (seeds a scratch database; a few minutes)
console-bench *ARGS: sync
    uv run --no-sync python -m tollgate_bench.console_logs {{ARGS}}

# exporter throughput: N events fanned out to ten vendor destinations (default 5000; about a minute)
bench-exporter EVENTS="5000": sync
    TOLLGATE_EXPORTER_BENCH={{EVENTS}} uv run --no-sync pytest tests/integration/exporter/test_sink_http_apis.py -k throughput -q -s -p no:cacheprovider

# write the ledger's dead letters (messages JetStream stopped delivering) from their streams
replay-dead: sync
    uv run --no-sync python -m tollgate_ledger replay-dead

# regenerate the NATS users/permissions files of Compose and Helm from tollgate_shared.permissions
nats-auth: sync
    uv run --no-sync python -m tollgate_shared.permissions write

# Prometheus, promtool and Alertmanager (Debian's packages) for the monitoring e2e test, when missing
monitoring-tools:
    @if command -v promtool >/dev/null && command -v prometheus >/dev/null && { command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null; }; then echo "prometheus: $(prometheus --version 2>&1 | head -1)"; else export DEBIAN_FRONTEND=noninteractive; apt-get install -y --no-install-recommends prometheus prometheus-alertmanager || (apt-get update && apt-get install -y --no-install-recommends prometheus prometheus-alertmanager); fi

# reconcile a load run's record with the ledger, totals, headers and the spend counter: `just reconcile RUN.jsonl`
reconcile *ARGS: sync
    uv run --no-sync python -m tollgate_devstack reconcile {{ARGS}}

# the fault suite in full (kill -9 each service, NATS 30 s and 5 min, PostgreSQL 3 min, Redis, a failing sink, cluster nodes), then reconcile (~20 min)
chaos *ARGS: sync
    TOLLGATE_CHAOS_FULL=1 uv run --no-sync pytest tests/e2e/chaos -s -p no:cacheprovider {{ARGS}}

# the scale-out suite in full: 3-node JetStream cluster, N replicas of every service (default 2), 1 -> 2 replica scaling
scaleout *ARGS: sync
    TOLLGATE_SCALEOUT_FULL=1 uv run --no-sync pytest tests/e2e/scaleout -s -p no:cacheprovider {{ARGS}}

# CPU each upstream provider adapter adds per call: translation both ways, SigV4 signing (seconds)
bench-providers *ARGS: sync
    cd tests && uv run --no-sync python -m support.fake_providers.bench {{ARGS}}

# the whole box unpinned (all services, NATS, PostgreSQL, Redis): CPU ms per logged call per process
bench-box *ARGS: sync
    bash bench/prepare.sh
    uv run --no-sync python -m tollgate_bench.wholebox {{ARGS}}

# ingress RSS over 1,000,000 calls through the whole box (~25 min; `--calls 20000` for a short one)
soak *ARGS: sync
    bash bench/prepare.sh
    uv run --no-sync python -m tollgate_bench.soak {{ARGS}}
