"""`groundswell sources add|list` and `groundswell sync` end to end on a file source."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from models.settings import Settings


@pytest.fixture(scope="module", autouse=True)
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("GROUNDSWELL_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("GROUNDSWELL_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("GROUNDSWELL_ZENDESK_TOKEN", "zd-cli-secret")
    monkeypatch.setenv("GROUNDSWELL_EMBEDDING_MODEL", "hashing-128")  # a sync embeds what it stored
    return CliRunner()


def test_add_list_sync(cli: CliRunner, tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text('{"external_id": "1", "text": "Slow exports", "occurred_at": "2026-01-02"}\n{"bad json\n')
    added = cli.invoke(app, ["sources", "add", "exports", "--kind", "file", "--option", f"path={data}"])
    assert added.exit_code == 0, added.output
    dup = cli.invoke(app, ["sources", "add", "exports", "--kind", "file", "--option", f"path={data}"])
    assert dup.exit_code == 1 and "already exists" in dup.output
    secret = cli.invoke(app, ["sources", "add", "zd", "--kind", "zendesk", "-o", "subdomain=acme",
                              "-o", "email=a@b.c", "-o", "api_token=zd-cli-secret"])
    assert secret.exit_code == 1 and "looks like a secret" in secret.output
    missing = cli.invoke(app, ["sources", "add", "zd", "--kind", "zendesk", "-o", "subdomain=acme"])
    assert missing.exit_code == 1 and "'email'" in missing.output
    bad_kind = cli.invoke(app, ["sources", "add", "x", "--kind", "ftp"])
    assert bad_kind.exit_code == 1 and "unknown kind 'ftp'" in bad_kind.output

    synced = cli.invoke(app, ["sync", "exports", "--json"])
    assert synced.exit_code == 0, synced.output
    summary = json.loads(synced.stdout.strip().splitlines()[-1])
    assert summary[0]["inserted"] == 1 and summary[0]["rejected"] == 1

    listed = cli.invoke(app, ["sources", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)
    assert (row["name"], row["kind"], row["items"], row["rejected"]) == ("exports", "file", 1, 1)
    assert row["last_sync_at"] and row["cursor"]["files"]
    assert "zd-cli-secret" not in listed.stdout


def test_sync_exits_non_zero_after_the_others_ran(cli: CliRunner, tmp_path: Path) -> None:
    data = tmp_path / "in.csv"
    data.write_text("external_id,text,occurred_at\n1,Needs SSO,2026-01-01\n")
    assert cli.invoke(app, ["sources", "add", "ok", "--kind", "file", "-o", f"path={data}"]).exit_code == 0
    assert cli.invoke(app, ["sources", "add", "zd", "--kind", "zendesk", "-o", "base_url=http://127.0.0.1:9",
                            "-o", "email=a@b.c"]).exit_code == 0
    result = cli.invoke(app, ["--verbose", "sync", "--all"], env={"GROUNDSWELL_HTTP_MAX_RETRIES": "0"})
    assert result.exit_code == 1
    assert "1 source(s) failed:\n  zd: GET http://127.0.0.1:9/" in result.output
    assert "Connection refused" in result.output and "zd-cli-secret" not in result.output
    listed = json.loads(cli.invoke(app, ["sources", "list", "--json"]).stdout)
    assert {r["name"]: r["items"] for r in listed} == {"ok": 1, "zd": 0}
    assert cli.invoke(app, ["sync"]).exit_code == 1
