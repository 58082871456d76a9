"""What every `groundswell` command shares: the runtime built from settings, output and failure helpers."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from models.db import engine_from_settings, make_session_factory
from models.settings import Settings

console = Console()
err_console = Console(stderr=True)


@dataclass
class Runtime:
    """What every command needs, built once from the settings."""

    settings: Settings

    @cached_property
    def engine(self) -> Engine:
        return engine_from_settings(self.settings)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_session_factory(self.engine)


def fail(message: str, code: int = 1) -> NoReturn:
    """Exit non-zero with the reason on stderr."""
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)  # whole lines
    raise typer.Exit(code)


def runtime(ctx: typer.Context) -> Runtime:
    obj = ctx.find_root().obj
    assert isinstance(obj, Runtime)
    return obj


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=str, ensure_ascii=False) + "\n")


def summary_table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title)
    if rows:
        for column in rows[0]:
            table.add_column(str(column), justify="right" if isinstance(rows[0][column], int | float) else "left")
        for row in rows:
            table.add_row(*(_cell(v) for v in row.values()))
    return table


def _cell(value: Any) -> str:
    """A table cell: integers with thousands separators, floats to 4 significant digits below 1 and 2
    decimals above, mappings one ``key: value`` per line."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, dict):
        return "\n".join(f"{k}: {_cell(v)}" for k, v in value.items())
    return str(value)


def record_table(title: str, record: dict[str, Any]) -> Table:
    """One record as rows of field and value: readable at any terminal width, nested mappings one per line."""
    table = Table(title=title)
    table.add_column("field")
    table.add_column("value")
    for key, value in record.items():
        table.add_row(str(key), _cell(value))
    return table


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Any]:
    """A rich progress bar on stderr; yields ``advance(n)``."""
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=False, disable=not err_console.is_terminal,
    )
    with progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)
