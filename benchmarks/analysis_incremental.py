"""Incremental analysis against a full re-clustering, from the same state with 1% new items.

    python -m benchmarks.analysis_incremental [--copies 6] [--new-share 0.01] [--model all-MiniLM-L6-v2] [--json]

Builds a database of demo feedback (``--copies`` demo sets under distinct sources, ~3,500 items each),
analyses 99% of it, adds the last 1% and embeds it as the product does when items arrive (the ingest flow
ends with that step, the API embeds notes and batches in the background; ``embed_on_arrival``), copies
the database, and times on one copy an incremental run and on the other a full run. ``ratio``
(incremental / full analysis run) is the figure of merit (target: at most 0.10).

The arrival embedding is timed too (``arrival_embed_s``): it is the same model encoding the same texts
whichever run follows, and no analysis design can make it cheaper. ``ratio_with_arrival_embed`` adds it to
both runs, for the cost of new items from their arrival to their themes. ``--embed-in-run`` leaves the new
items unembedded, as with ``GROUNDSWELL_EMBED_ON_ARRIVAL=false``, so both runs embed them themselves;
``ratio_without_embed`` then leaves out that step.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import emit, peak_mib


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=6)
    parser.add_argument("--new-share", type=float, default=0.01)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--embed-in-run", action="store_true",
                        help="leave the new items for the runs to embed (embed_on_arrival off)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from ingest.demo import DEMO_SOURCES, generate_demo
    from ingest.records import FeedbackRecord
    from ingest.upsert import FeedbackWriter, get_or_create_source
    from models import migrate
    from models.db import make_engine, make_session_factory, session_scope
    from models.settings import Settings
    from pipeline.analysis import Analyzer
    from pipeline.embedding import make_embedder
    from pipeline.embedding_store import embed_missing

    now = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)
    items: list[tuple[str, str, FeedbackRecord]] = []
    accounts = []
    for copy in range(args.copies):
        data = generate_demo(seed=100 + copy, now=now)
        accounts.extend(data.accounts)
        items.extend((f"{name}-{copy}", DEMO_SOURCES[name], rec) for name, rec in data.items)
    items.sort(key=lambda t: t[2].occurred_at)
    cut = int(len(items) * (1 - args.new_share))
    embedder = make_embedder(args.model)

    def store(factory: Any, batch: list[tuple[str, str, FeedbackRecord]]) -> None:
        by_source: dict[tuple[str, str], list[FeedbackRecord]] = {}
        for name, kind, rec in batch:
            by_source.setdefault((name, kind), []).append(rec)
        for (name, kind), recs in by_source.items():
            for start in range(0, len(recs), 2000):
                with session_scope(factory) as session:
                    source = get_or_create_source(session, name=name, kind=kind)
                    FeedbackWriter(session, source).write(recs[start:start + 2000])

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base.db"
        engine = make_engine(f"sqlite:///{base}")
        migrate.upgrade(engine)
        factory = make_session_factory(engine)
        from ingest.accounts import AccountResolver

        with session_scope(factory) as session:
            resolver = AccountResolver(session)
            for account in accounts:
                resolver.upsert(account)
        store(factory, items[:cut])
        settings = Settings(data_dir=Path(tmp), _env_file=None)  # type: ignore[call-arg]
        Analyzer(factory, settings, embedder).run(full=True, now=now)
        store(factory, items[cut:])
        t0 = time.perf_counter()
        arrival_embedded = 0 if args.embed_in_run else embed_missing(factory, embedder)  # as the ingest flow does
        arrival_s = 0.0 if args.embed_in_run else time.perf_counter() - t0
        engine.dispose()
        timings = {}
        for kind in ("incremental", "full"):
            path = Path(tmp) / f"{kind}.db"
            shutil.copyfile(base, path)
            engine = make_engine(f"sqlite:///{path}")
            analyzer = Analyzer(make_session_factory(engine), settings, embedder)
            t0 = time.perf_counter()
            summary = analyzer.run(full=(kind == "full"), now=now)
            timings[kind] = (time.perf_counter() - t0, summary)
            engine.dispose()
    inc, full = timings["incremental"], timings["full"]
    inc_rest, full_rest = inc[0] - inc[1].steps["embed"], full[0] - full[1].steps["embed"]
    rows = [{
        "benchmark": "analysis_incremental", "items": len(items), "new_items": len(items) - cut,
        "arrival_embedded": arrival_embedded, "arrival_embed_s": round(arrival_s, 2),
        "embedded_in_run": inc[1].embedded, "model": embedder.name, "incremental_s": round(inc[0], 2),
        "full_s": round(full[0], 2), "ratio": round(inc[0] / full[0], 3),
        "ratio_with_arrival_embed": round((inc[0] + arrival_s) / (full[0] + arrival_s), 3),
        "ratio_without_embed": round(inc_rest / full_rest, 3),
        "incremental_steps": {k: round(v, 2) for k, v in inc[1].steps.items()},
        "full_steps": {k: round(v, 2) for k, v in full[1].steps.items()},
        "peak_mib": peak_mib(),  # the whole benchmark: demo build, embedding, both runs
    }]
    emit(rows, as_json=args.json, title="incremental vs full analysis")
    return rows


if __name__ == "__main__":
    main()
