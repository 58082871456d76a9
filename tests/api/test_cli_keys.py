"""`groundswell keys create/list/revoke` against the test database."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.cli import app as cli


@pytest.fixture
def env(settings: Any, engine: Any) -> dict[str, str]:
    return {"GROUNDSWELL_DATABASE_URL": settings.effective_database_url,
            "GROUNDSWELL_DATA_DIR": str(settings.data_dir)}


def test_create_list_revoke(env: dict[str, str], client: TestClient) -> None:
    runner = CliRunner()
    created = runner.invoke(cli, ["keys", "create", "--role", "pm", "--name", "jane"], env=env)
    assert created.exit_code == 0, created.output
    secret = created.output.strip().splitlines()[-1]
    assert secret.startswith("gs_") and len(secret) > 40
    assert client.get("/v1/themes", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    listed = runner.invoke(cli, ["keys", "list", "--json"], env=env)
    assert listed.exit_code == 0 and '"jane"' in listed.output and secret not in listed.output
    import json

    key_id = json.loads(listed.output)[0]["id"]
    revoked = runner.invoke(cli, ["keys", "revoke", str(key_id)], env=env)
    assert revoked.exit_code == 0, revoked.output
    assert client.get("/v1/themes", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_bad_arguments(env: dict[str, str]) -> None:
    runner = CliRunner()
    bad_role = runner.invoke(cli, ["keys", "create", "--role", "boss", "--name", "x"], env=env)
    assert bad_role.exit_code == 1 and "unknown role" in bad_role.output
    missing = runner.invoke(cli, ["keys", "revoke", "999"], env=env)
    assert missing.exit_code == 1 and "does not exist" in missing.output
