"""The file connector: CSV and JSONL, quarantine of bad rows, change detection, resume and mapping."""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from ingest.connectors.files import FileConnector
from ingest.errors import ConfigError
from ingest.sync import sync_source
from models.tables import Account, Feedback, RejectedRecord, Source, SyncState
from tests.ingest.conftest import add_source, assert_crash_and_rerun_equal, feedback_rows, run_ok

HEADER = ["external_id", "text", "occurred_at", "account_name", "account_domain", "author_email", "kind", "title"]
BIG = "x" * 100_001


def good_row(i: int) -> list[str]:
    return [f"c{i}", f"Export to CSV times out on report {i} for user{i}@acme{i % 7}.com", f"2026-01-{i % 28 + 1:02d}",
            f"Acme {i % 7}", f"acme{i % 7}.com", "", "ticket", f"Ticket {i}"]


def write_mixed_csv(path: Path, n: int, bad_every: int) -> Counter[str]:
    """n data rows; every ``bad_every``-th is broken in one of four ways. Returns the expected reasons."""
    expected: Counter[str] = Counter()
    with path.open("wb") as fh:
        fh.write((",".join(HEADER) + "\n").encode())
        for i in range(n):
            row = good_row(i)
            problem = None
            if i % bad_every == bad_every - 1:
                problem = ("no text", "bad date", "undecodable bytes", "text over limit")[(i // bad_every) % 4]
                if problem == "no text":
                    row[1] = "  "
                elif problem == "bad date":
                    row[2] = "last tuesday"
                elif problem == "text over limit":
                    row[1] = BIG
                expected[problem] += 1
            buf = _csv_line(row).encode()
            if problem == "undecodable bytes":
                buf = buf.replace(b"Export", b"Exp\xff\xferort")
            fh.write(buf)
    return expected


def write_mixed_jsonl(path: Path, n: int, bad_every: int, offset: int) -> Counter[str]:
    expected: Counter[str] = Counter()
    with path.open("wb") as fh:
        for i in range(offset, offset + n):
            obj = dict(zip(HEADER, good_row(i), strict=True))
            line = json.dumps(obj).encode()
            if (i - offset) % bad_every == bad_every - 1:
                problems = ("invalid JSON line", "undecodable bytes", "no text", "bad date")
                problem = problems[((i - offset) // bad_every) % 4]
                if problem == "invalid JSON line":
                    line = line[:-5]
                elif problem == "undecodable bytes":
                    line = line.replace(b"Export", b"Exp\xc3\x28ort")
                elif problem == "no text":
                    line = json.dumps({**obj, "text": None}).encode()
                else:
                    line = json.dumps({**obj, "occurred_at": "2026-13-45"}).encode()
                expected[problem] += 1
            fh.write(line + b"\n")
    return expected


def _csv_line(row: list[str]) -> str:
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(row)
    return buf.getvalue()


def connector(name: str, **options: str) -> FileConnector:
    return FileConnector(source=name, options=options)


def reason_kind(reason: str) -> str:
    for kind in ("no text", "bad date", "undecodable bytes", "text over limit", "invalid JSON line"):
        if reason.startswith(kind):
            return kind
    return reason


def test_ten_thousand_rows_with_three_percent_bad(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    (folder / "chat").mkdir(parents=True)
    expected: Counter[str] = Counter()
    expected += write_mixed_csv(folder / "tickets.csv", 4999, 34)  # 147 bad
    expected += write_mixed_jsonl(folder / "chat" / "chats.jsonl", 4999, 33, offset=5000)  # 151 bad
    # One more broken row in each file (10,000 rows in all): a truncated JSON line, a blank-text CSV row.
    with (folder / "chat" / "chats.jsonl").open("ab") as fh:
        fh.write(b'{"external_id": "late", "text": "unterminated\n')
    expected["invalid JSON line"] += 1
    with (folder / "tickets.csv").open("a") as fh:
        fh.write(_csv_line(["late-csv", "", "2026-01-01", "", "", "", "ticket", ""]))
    expected["no text"] += 1
    total_bad = sum(expected.values())
    assert total_bad == 300

    add_source(sessions, "exports", "file", {"path": str(folder)})
    result = run_ok(sessions, "exports", connector("exports", path=str(folder)))
    assert result.stats.inserted == 9_700
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Feedback)) == 9_700
        rejected = session.scalars(select(RejectedRecord)).all()
    assert len(rejected) == 300
    assert result.stats.rejected == 300
    assert Counter(reason_kind(r.reason) for r in rejected) == expected
    keys = {r.record_key for r in rejected}
    assert "tickets.csv:35" in keys  # row index 33 (0-based) sits on line 35 (header is line 1)
    assert "chat/chats.jsonl:33" in keys
    assert all(r.payload for r in rejected)
    big = next(r for r in rejected if r.reason.startswith("text over limit"))
    assert "100001 bytes" in big.reason

    again = run_ok(sessions, "exports", connector("exports", path=str(folder)))
    assert (again.stats.inserted, again.stats.updated, again.stats.rejected) == (0, 0, 0)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Feedback)) == 9_700
        assert session.scalar(select(func.count()).select_from(RejectedRecord)) == 300


def test_changed_file_is_read_again_and_an_edit_updates(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    path = tmp_path / "feedback.csv"
    rows = [good_row(i) for i in range(20)]
    path.write_text(_csv_line(HEADER) + "".join(_csv_line(r) for r in rows))
    add_source(sessions, "csv", "file", {"path": str(path)})
    assert run_ok(sessions, "csv", connector("csv", path=str(path))).stats.inserted == 20
    with sessions.begin() as session:  # pretend analysis ran
        session.execute(update(Feedback).values(needs_analysis=False))

    rows[3][1] = "Export to CSV now fails with a 502 error every time"
    rows.append(good_row(99))
    path.write_text(_csv_line(HEADER) + "".join(_csv_line(r) for r in rows))
    result = run_ok(sessions, "csv", connector("csv", path=str(path)))
    assert (result.stats.inserted, result.stats.updated, result.stats.unchanged) == (1, 1, 19)
    stored = feedback_rows(sessions, "csv")
    assert len(stored) == 21
    assert "502 error" in stored["c3"].text
    assert stored["c3"].needs_analysis and stored["c99"].needs_analysis
    assert not any(f.needs_analysis for k, f in stored.items() if k not in ("c3", "c99"))


def test_touched_but_unchanged_file_adds_nothing(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    path = tmp_path / "feedback.jsonl"
    path.write_text("".join(json.dumps(dict(zip(HEADER, good_row(i), strict=True))) + "\n" for i in range(5)))
    add_source(sessions, "j", "file", {"path": str(path)})
    run_ok(sessions, "j", connector("j", path=str(path)))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    result = run_ok(sessions, "j", connector("j", path=str(path)))
    assert result.stats.stored == 0 and result.pages == 1  # the cursor page remembering the new mtime
    with sessions() as session:
        cursor = session.scalars(select(SyncState.cursor)).one()
    entry = cursor["files"][str(path.resolve())]
    assert entry["mtime_ns"] == path.stat().st_mtime_ns and entry["done"] and entry["rows"] == 5
    assert run_ok(sessions, "j", connector("j", path=str(path))).pages == 0


def test_mapping_nested_json_and_accounts_file(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    data = tmp_path / "notes.jsonl"
    data.write_text("\n".join(json.dumps(o) for o in [
        {"id": "n1", "body": "Needs SSO with Okta before renewal", "when": 1767225600,
         "company": {"name": "Globex Corporation", "site": "https://www.globex.com"}, "type": "call note"},
        {"id": "n2", "body": "Loves the new dashboard", "when": "2026-01-02T09:00:00+02:00",
         "company": {"name": "Initech"}},
    ]) + "\n")
    accounts = tmp_path / "accounts.csv"
    accounts.write_text("name,domain,segment,arr,lifecycle,open_pipeline\n"
                        "Globex,globex.com,Enterprise,\"120,000\",customer,\n"
                        "Initech,initech.io,SMB,not-a-number,prospect,5000\n"
                        ",,smb,1,customer,0\n")
    options = {"path": str(data), "accounts": str(accounts), "map.external_id": "id", "map.text": "body",
               "map.occurred_at": "when", "map.account_name": "company.name", "map.account_domain": "company.site",
               "map.kind": "type"}
    add_source(sessions, "notes", "file", options)
    result = run_ok(sessions, "notes", connector("notes", **options))
    assert result.stats.inserted == 2 and result.stats.rejected == 2  # two bad account rows
    stored = feedback_rows(sessions, "notes")
    assert stored["n1"].kind == "call_note"
    assert stored["n2"].occurred_at.isoformat() == "2026-01-02T07:00:00+00:00"
    with sessions() as session:
        globex = session.scalars(select(Account).where(Account.domain == "globex.com")).one()
        reasons = sorted(r.reason for r in session.scalars(select(RejectedRecord)))
        linked = session.scalars(select(Feedback).where(Feedback.external_id == "n1")).one()
    assert (globex.arr, globex.segment, globex.lifecycle) == (120_000.0, "enterprise", "customer")
    assert linked.account_id == globex.id
    assert reasons == ["account without name or domain", "bad number in 'arr': 'not-a-number'"]


def test_crash_mid_file_then_rerun_equals_one_clean_run(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    write_mixed_csv(path, 120, 10)
    options = {"path": str(path), "page_size": "25"}
    add_source(sessions, "f", "file", options)
    assert_crash_and_rerun_equal(sessions, "f", lambda: connector("f", **options), pages_before_crash=2)


def test_a_missing_date_names_its_column_and_the_mapping(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("id,text,created\n1,Export to CSV please,2026-01-05\n2,Dark mode,\n")
    add_source(sessions, "x", "file", {"path": str(path)})
    run_ok(sessions, "x", connector("x", path=str(path)))
    with sessions() as session:
        reasons = {k: r for k, r in session.execute(select(RejectedRecord.record_key, RejectedRecord.reason))}
    assert set(reasons) == {"export.csv:2", "export.csv:3"}
    assert all("'occurred_at' is missing" in r and "map.occurred_at=COLUMN" in r for r in reasons.values())

    mapped = {"path": str(path), "map.occurred_at": "created"}
    add_source(sessions, "y", "file", mapped)
    run_ok(sessions, "y", connector("y", **mapped))
    with sessions() as session:
        y = session.scalar(select(Source.id).where(Source.name == "y"))
        reasons = {k: r for k, r in session.execute(select(RejectedRecord.record_key, RejectedRecord.reason)
                                                    .where(RejectedRecord.source_id == y))}
        texts = session.scalars(select(Feedback.text).where(Feedback.source_id == y)).all()
    assert texts == ["Export to CSV please"]
    assert list(reasons) == ["export.csv:3"] and "the column 'created' is empty" in reasons["export.csv:3"]


def test_bad_configuration_is_reported_clearly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs the option 'path'"):
        FileConnector(source="x", options={})
    with pytest.raises(ConfigError, match="does not exist"):
        FileConnector(source="x", options={"path": str(tmp_path / "missing.csv")})
    with pytest.raises(ConfigError, match="unknown mapping map.body"):
        FileConnector(source="x", options={"path": str(tmp_path), "map.body": "text"})
    (tmp_path / "a.txt").write_text("hello")
    with pytest.raises(ConfigError, match="unsupported file type"):
        FileConnector(source="x", options={"path": str(tmp_path / "a.txt")}).data_files()


def test_sync_of_unknown_source_is_a_config_error(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(_csv_line(HEADER))
    with pytest.raises(ConfigError, match="no source named 'nope'"):
        sync_source(sessions, "nope", connector("nope", path=str(tmp_path / "a.csv")))


def test_semicolon_and_tab_exports_read_like_comma_ones(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    rows = [good_row(i) for i in range(12)]
    rows[4][1] = "Export fails; the file is empty, again"  # a delimiter inside a quoted text
    comma = tmp_path / "comma" / "feedback.csv"
    comma.parent.mkdir()
    comma.write_text(_csv_line(HEADER) + "".join(_csv_line(r) for r in rows), encoding="utf-8")

    def delimited(path: Path, delimiter: str, bom: bool) -> Path:
        import io

        buf = io.StringIO()
        writer = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n")
        writer.writerows([HEADER, *rows])
        path.parent.mkdir()
        path.write_text(("\ufeff" if bom else "") + buf.getvalue(), encoding="utf-8")
        return path

    semicolon = delimited(tmp_path / "excel" / "feedback.csv", ";", bom=True)  # Excel, European locale
    tab = delimited(tmp_path / "tab" / "feedback.tsv", "\t", bom=False)
    stored = {}
    for name, path in (("comma", comma), ("semicolon", semicolon), ("tab", tab)):
        add_source(sessions, name, "file", {"path": str(path)})
        result = run_ok(sessions, name, connector(name, path=str(path)))
        assert (result.stats.inserted, result.stats.rejected) == (12, 0), name
        stored[name] = {k: (f.text, f.occurred_at, f.title) for k, f in feedback_rows(sessions, name).items()}
    assert stored["semicolon"] == stored["tab"] == stored["comma"]
    assert stored["comma"]["c4"][0] == "Export fails; the file is empty, again"
