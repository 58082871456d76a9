"""Property-based fuzzing of the OpenAPI schema (schemathesis) with an admin key: no input gets a 500."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings

schemathesis = pytest.importorskip("schemathesis")

EXAMPLES_PER_OPERATION = 12


def test_no_input_gets_a_server_error(app: Any, world: Any, keys: dict[str, str]) -> None:
    # `world` seeds rows, so small ids exist and the fuzzer reaches past the 404s.
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    # Revoking keys last, so the admin key the fuzzer uses stays valid for the other operations.
    operations.sort(key=lambda op: (op.method.upper() == "DELETE", op.path, op.method))
    assert len(operations) >= 20
    headers = {"Authorization": f"Bearer {keys['admin']}"}
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate],  # report, don't spend minutes shrinking
                  suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            response = case.call(headers=headers)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} {case.query} {case.body!r:.300} -> "
                                f"{response.status_code} {response.text[:300]}")

        run()
    assert failures == []
