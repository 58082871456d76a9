"""Matching feedback to accounts: by external id, then e-mail domain, then normalised name."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ingest.records import LIFECYCLES, AccountRecord, AccountRef
from models.db import insert_for
from models.tables import Account, utcnow

# Domains of personal mailboxes say nothing about the customer behind them.
FREE_MAIL_DOMAINS = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "hotmail.com", "outlook.com", "live.com",
    "msn.com", "aol.com", "icloud.com", "me.com", "mac.com", "proton.me", "protonmail.com", "gmx.de",
    "gmx.net", "web.de", "mail.ru", "yandex.ru", "qq.com", "163.com", "orange.fr", "free.fr", "laposte.net",
})
_LEGAL_SUFFIX = re.compile(
    r"\b(inc|incorporated|llc|ltd|limited|gmbh|ag|sa|sas|bv|plc|corp|corporation|co|company|pty)\b\.?$"
)
_NON_WORD = re.compile(r"[^\w]+")


def name_key(name: str) -> str:
    """Key two spellings of one company share: 'ACME, Inc.' and 'Acme' both give 'acme'."""
    text = unicodedata.normalize("NFKC", name).casefold().strip()
    text = _NON_WORD.sub(" ", text).strip()
    previous = None
    while previous != text:
        previous = text
        text = _LEGAL_SUFFIX.sub("", text).strip()
    return text or _NON_WORD.sub(" ", name.casefold()).strip() or name.strip()


def normalize_domain(value: str | None) -> str | None:
    """'https://www.Acme.com/x', 'jane@acme.com' and 'acme.com' all give 'acme.com'; free mail gives None."""
    if not value:
        return None
    text = value.strip().casefold()
    if "@" in text:
        text = text.rsplit("@", 1)[1]
    text = re.sub(r"^[a-z]+://", "", text).split("/", 1)[0].split(":", 1)[0]
    if text.startswith("www."):
        text = text[4:]
    text = text.strip(".")
    if "." not in text or text in FREE_MAIL_DOMAINS:
        return None
    return text


class AccountResolver:
    """Finds or creates accounts for one sync; caches lookups so a page costs no extra queries.

    Counts the accounts it creates in ``created``.
    """

    def __init__(self, session: Session, *, preload: bool = True) -> None:
        self.session = session
        self.created = 0
        self.preload = preload
        self._by_ext: dict[str, int] = {}
        self._by_domain: dict[str, int] = {}
        self._by_name: dict[str, int] = {}
        if preload:  # a sync resolves thousands of refs: one query up front beats one per ref
            for acc_id, key, domain, ext in session.execute(
                select(Account.id, Account.name_key, Account.domain, Account.external_ids)
            ):
                self._remember(acc_id, key, domain, ext or {})

    def _remember(self, acc_id: int, key: str, domain: str | None, ext: dict[str, Any]) -> None:
        self._by_name.setdefault(key, acc_id)
        if domain:
            self._by_domain.setdefault(domain, acc_id)
        for system, value in ext.items():
            self._by_ext[f"{system}:{value}"] = acc_id

    def find(self, ref: AccountRef) -> int | None:
        if not self.preload:
            self._load_candidates(ref)
        if ref.external_id and ref.system:
            hit = self._by_ext.get(f"{ref.system}:{ref.external_id}")
            if hit is not None:
                return hit
        domain = normalize_domain(ref.domain)
        if domain and domain in self._by_domain:
            return self._by_domain[domain]
        if ref.name and ref.name.strip():
            return self._by_name.get(name_key(ref.name))
        return None

    def _load_candidates(self, ref: AccountRef) -> None:
        """Without a preload (one field note), fetch just the accounts this ref could name."""
        domain = normalize_domain(ref.domain)
        conditions = []
        if domain:
            conditions.append(Account.domain == domain)
        if ref.name and ref.name.strip():
            conditions.append(Account.name_key == name_key(ref.name)[:300])
        if ref.external_id and ref.system:
            conditions.append(Account.external_ids[ref.system].as_string() == str(ref.external_id))
        if not conditions:
            return
        for acc_id, key, acc_domain, ext in self.session.execute(
            select(Account.id, Account.name_key, Account.domain, Account.external_ids).where(or_(*conditions))
        ):
            self._remember(acc_id, key, acc_domain, ext or {})

    def resolve(self, ref: AccountRef | None) -> int | None:
        """The id of the account ``ref`` names, creating an unknown account when needed."""
        if ref is None:
            return None
        found = self.find(ref)
        domain = normalize_domain(ref.domain)
        if found is not None:
            if ref.external_id and ref.system and f"{ref.system}:{ref.external_id}" not in self._by_ext:
                account = self.session.get(Account, found)
                if account is not None:
                    account.external_ids = {**(account.external_ids or {}), ref.system: str(ref.external_id)}
                    self._by_ext[f"{ref.system}:{ref.external_id}"] = found
            return found
        name = (ref.name or "").strip() or domain
        if not name:
            return None
        ext = {ref.system: str(ref.external_id)} if ref.external_id and ref.system else {}
        key = name_key(name)[:300]
        # Insert-or-ignore on the unique name key: two writers meeting the same new account at once
        # (concurrent field notes, parallel syncs) both end up with the one row.
        table = Account.__table__
        insert = insert_for(self.session)(table).values(
            name=name[:300], name_key=key, domain=domain, external_ids=ext, arr=0.0, open_pipeline=0.0,
            lifecycle="unknown", created_at=utcnow(), updated_at=utcnow(),
        ).on_conflict_do_nothing(index_elements=[table.c.name_key]).returning(table.c.id)
        acc_id = self.session.execute(insert).scalar()
        if acc_id is None:
            acc_id = self.session.execute(select(Account.id).where(Account.name_key == key)).scalar_one()
        else:
            self.created += 1
        self._remember(acc_id, key, domain, ext)
        return int(acc_id)

    def upsert(self, record: AccountRecord, system: str | None = None) -> int:
        """Create or enrich an account from CRM facts; fields left None keep their stored value."""
        ext_id = record.external_ids.get(system) if system else None
        ref = AccountRef(name=record.name, domain=record.domain, external_id=ext_id, system=system)
        acc_id = self.resolve(ref)
        if acc_id is None:
            raise ValueError(f"account record without name or domain: {record!r}")
        account = self.session.get(Account, acc_id)
        assert account is not None
        if record.name and account.name == account.domain:
            account.name = record.name[:300]
        if record.domain and not account.domain:
            account.domain = normalize_domain(record.domain)
        if record.segment is not None:
            account.segment = record.segment.strip().lower() or None
        if record.arr is not None:
            account.arr = float(record.arr)
        if record.lifecycle is not None:
            lifecycle = record.lifecycle.strip().lower()
            account.lifecycle = lifecycle if lifecycle in LIFECYCLES else "unknown"
        if record.open_pipeline is not None:
            account.open_pipeline = float(record.open_pipeline)
        if record.external_ids:
            account.external_ids = {**(account.external_ids or {}), **record.external_ids}
            for sys_name, value in record.external_ids.items():
                self._by_ext[f"{sys_name}:{value}"] = acc_id
        return acc_id
