"""Schema-driven fuzzing of the running admin service: no input may produce a 5xx.

Every operation of the live OpenAPI document gets generated requests in two modes:
positive (valid by the schema: must never fail with a 5xx, and a 2xx body must match its
response schema) and negative (schema-violating bodies, parameters and headers: must be
refused with a 4xx, never a 5xx). The case count is kept modest so the run stays well
under a minute; the counts are printed for the record.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import schemathesis
from admin_e2e_harness import E2E_MASTER
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance

from support.processes import Service

EXAMPLES_PER_MODE = 12
AUTH = {"Authorization": f"Bearer {E2E_MASTER}", "x-litellm-api-key": E2E_MASTER}


def fuzz(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    base: str,
    statuses: Counter[str],
    server_errors: list[str],
) -> None:
    """Run EXAMPLES_PER_MODE generated cases of one operation against the service."""
    checks: list[Any] = [not_a_server_error]
    if mode is GenerationMode.POSITIVE:
        checks.append(response_schema_conformance)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_MODE,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=base, headers=AUTH, timeout=10)
        statuses[str(response.status_code)] += 1
        if response.status_code >= 500:
            server_errors.append(
                f"{case.method} {case.formatted_path} -> {response.status_code}: "
                f"{response.text[:300]}"
            )
        case.validate_response(response, checks=checks)

    run()


def test_no_generated_request_gets_a_server_error(admin_service: Service) -> None:
    base = admin_service.url
    schema = schemathesis.openapi.from_url(f"{base}/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 28
    statuses: Counter[str] = Counter()
    server_errors: list[str] = []
    skipped: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzz(operation, mode, base, statuses, server_errors)
            except Unsatisfiable:
                skipped.append(f"{operation.label} ({mode.value})")

    total = sum(statuses.values())
    print(
        f"\nschemathesis: {len(operations)} operations, {total} requests, {dict(statuses)}; "
        f"no negative cases possible for: {skipped}"
    )
    assert not server_errors, server_errors
    assert total >= len(operations) * EXAMPLES_PER_MODE
    # The service is still healthy after the run.
    assert httpx.get(f"{base}/health", timeout=5).status_code == 200
