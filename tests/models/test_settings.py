from pathlib import Path

import pytest
from pydantic import ValidationError

from models.settings import Settings, settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_environment_overrides_with_prefix_and_nested_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROUNDSWELL_DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("GROUNDSWELL_SCORE_WEIGHTS__REACH", "0.9")
    monkeypatch.setenv("GROUNDSWELL_COMPETITORS", '{"Acme": ["acme"]}')
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.effective_database_url == "postgresql+psycopg://u@h/db"
    assert s.score_weights.reach == 0.9
    assert s.competitors == {"Acme": ["acme"]}


def test_default_database_is_a_sqlite_file_under_the_data_dir(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    assert s.effective_database_url == f"sqlite:///{tmp_path.as_posix()}/groundswell.db"


def test_bad_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROUNDSWELL_MOMENTUM_WINDOW_WEEKS", "9")
    with pytest.raises(ValidationError, match="momentum_window_weeks"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_secrets_do_not_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROUNDSWELL_ZENDESK_TOKEN", "zd-very-secret")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert "zd-very-secret" not in repr(s) and "zd-very-secret" not in str(s.model_dump())


def test_readme_lists_every_setting() -> None:
    assert settings_table() in README.read_text(), "README's settings table is stale: python -m models.settings"


def test_query_precision_takes_what_the_embedder_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    from typing import get_args

    from pipeline.embedding import QUERY_PRECISIONS

    # models may not import pipeline, so the setting spells the values itself; this keeps the two lists one
    assert set(get_args(Settings.model_fields["query_precision"].annotation)) == set(QUERY_PRECISIONS)
    monkeypatch.setenv("GROUNDSWELL_QUERY_PRECISION", "int4")
    with pytest.raises(ValidationError, match="query_precision"):
        Settings(_env_file=None)  # type: ignore[call-arg]
