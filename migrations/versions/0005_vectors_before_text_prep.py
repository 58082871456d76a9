"""drop the vectors a sentence model made before it read texts without spoken-language fillers

Since `pipeline.text_prep` a sentence-transformers model reads each text without the fillers of spoken
English ("um", "you know", a comma-set "like", stutters). A vector stored before then was made from the
text as written. For a text with none of those fillers it is the same vector, and it stays; for a text
with them it is not what the model makes now, and search queries (prepared by the same rules) would be
compared against it. Those vectors are dropped, so the next analysis run embeds their texts again, as it
embeds any text without a vector (`pipeline.embedding_store.missing_hashes`); until then those items are
missing from search, not wrong in it. The hashing test embedder reads texts as written; its vectors stay.

It reads every text with a sentence vector once: 7.3 s for 100,000 items (the API benchmark's database,
SQLite, of which 6.6% of the vectors went). The rules are the ones this code has at upgrade time: a
database that skips from before them to a later version of them loses exactly the vectors that version
reads differently from the text as written.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 14:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

from pipeline.text_prep import embedding_text

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Every model but the hashing test embedder (which make_embedder names hashing-DIM and which reads texts as
# written) reads them through the rules.
SENTENCE_MODELS = "model NOT LIKE 'hashing-%'"
CHUNK = 1000


def upgrade() -> None:
    bind = op.get_bind()
    # Ordered by content hash (indexed), so a text shared by several items is read once in a row; streamed,
    # so a large table is not held in memory. The hashes to drop are collected first and deleted after the
    # scan, never while its cursor is open.
    rows = bind.execute(sa.text(
        "SELECT f.content_hash, f.text FROM feedback f WHERE EXISTS (SELECT 1 FROM embedding e "
        f"WHERE e.content_hash = f.content_hash AND e.{SENTENCE_MODELS}) ORDER BY f.content_hash"
    ).execution_options(yield_per=CHUNK))
    stale: list[str] = []
    last = None
    for content_hash, text in rows:
        if content_hash != last and embedding_text(text) != text:
            stale.append(content_hash)
        last = content_hash
    rows.close()
    delete = sa.text(f"DELETE FROM embedding WHERE {SENTENCE_MODELS} AND content_hash IN :hashes").bindparams(
        sa.bindparam("hashes", expanding=True))
    for start in range(0, len(stale), CHUNK):
        bind.execute(delete, {"hashes": stale[start:start + CHUNK]})


def downgrade() -> None:
    # Nothing to restore: the dropped vectors are embedded again by the next run, under the current rules.
    pass
