"""Which connector serves which kind of source, and how one is built from a source row and the settings.

Secrets (vendor tokens) come from the settings only; a source's stored options must never hold one, and
:func:`validate_options` refuses option names that look like a secret.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from ingest.base import Connector
from ingest.errors import ConfigError
from ingest.http import Sleep
from models.settings import Settings
from models.tables import Source

KINDS = ("zendesk", "intercom", "salesforce", "hubspot", "file")
# Options each kind cannot work without (checked at `sources add` time too).
REQUIRED_OPTIONS: dict[str, tuple[tuple[str, ...], ...]] = {
    # each inner tuple: at least one of these options
    "zendesk": (("subdomain", "base_url"), ("email",)),
    "intercom": (),
    "salesforce": (("instance_url",),),
    "hubspot": (),
    "file": (("path",),),
}
TOKEN_SETTING = {"zendesk": "zendesk_token", "intercom": "intercom_token", "salesforce": "salesforce_token",
                 "hubspot": "hubspot_token"}
_SECRET_NAME = re.compile(r"(token|secret|password|passwd|api[_-]?key|authorization|credential)", re.I)


def validate_options(kind: str, options: Mapping[str, Any], *, source: str | None = None) -> dict[str, str]:
    """Check a kind and its options before they are stored.

    Raises:
        ConfigError: unknown kind, a required option missing, or an option that looks like a secret.
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}", source=source)
    clean: dict[str, str] = {}
    for key, value in options.items():
        key = str(key).strip()
        if not key:
            raise ConfigError("an option has an empty name (use --option key=value)", source=source)
        if _SECRET_NAME.search(key):
            setting = TOKEN_SETTING.get(kind, "the matching setting")
            raise ConfigError(
                f"option {key!r} looks like a secret; secrets are never stored with a source: set "
                f"GROUNDSWELL_{setting.upper()} in the environment instead", source=source)
        clean[key] = str(value)
    for alternatives in REQUIRED_OPTIONS[kind]:
        if not any(str(clean.get(name, "")).strip() for name in alternatives):
            raise ConfigError(
                f"a {kind} source needs the option {' or '.join(repr(a) for a in alternatives)} "
                f"(--option {alternatives[0]}=...)", source=source)
    return clean


def token_for(kind: str, settings: Settings, *, source: str | None = None) -> str:
    """The vendor token of ``kind`` from the settings.

    Raises:
        ConfigError: the token is not set (the message names the environment variable).
    """
    setting = TOKEN_SETTING[kind]
    secret = getattr(settings, setting)
    value = secret.get_secret_value() if secret is not None else ""
    if not value:
        raise ConfigError(f"the {kind} token is not set: export GROUNDSWELL_{setting.upper()}", source=source)
    return value


def build_connector(source: Source, settings: Settings, *, transport: httpx.BaseTransport | None = None,
                    sleep: Sleep | None = None) -> Connector:
    """The connector for a source row, with its secret from the settings.

    Args:
        source: the configured source.
        settings: where tokens, timeouts and limits come from.
        transport: an httpx transport for vendor kinds (tests inject a fake vendor).
        sleep: how the HTTP client waits between retries (tests record it).

    Raises:
        ConfigError: unknown kind, missing option or missing secret.
    """
    options = validate_options(source.kind, source.config or {}, source=source.name)
    factory = _FACTORIES[source.kind]
    return factory(source.name, options, settings, transport, sleep)


def _file(name: str, options: dict[str, str], settings: Settings, _t: Any, _s: Any) -> Connector:
    from ingest.connectors.files import FileConnector

    return FileConnector(source=name, options=options, max_text_bytes=settings.max_text_bytes)


def _vendor(kind: str) -> Callable[[str, dict[str, str], Settings, Any, Any], Connector]:
    def make(name: str, options: dict[str, str], settings: Settings, transport: httpx.BaseTransport | None,
             sleep: Sleep | None) -> Connector:
        cls = _vendor_class(kind)
        return cls(source=name, options=options, token=token_for(kind, settings, source=name), transport=transport,
                   timeout_s=settings.http_timeout_s, max_retries=settings.http_max_retries, sleep=sleep)
    return make


def _vendor_class(kind: str) -> Any:
    if kind == "zendesk":
        from ingest.connectors.zendesk import ZendeskConnector
        return ZendeskConnector
    if kind == "hubspot":
        from ingest.connectors.hubspot import HubSpotConnector
        return HubSpotConnector
    if kind == "salesforce":
        from ingest.connectors.salesforce import SalesforceConnector
        return SalesforceConnector
    if kind == "intercom":
        from ingest.connectors.intercom import IntercomConnector
        return IntercomConnector
    raise ConfigError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")


_FACTORIES: dict[str, Callable[[str, dict[str, str], Settings, Any, Any], Connector]] = {
    "file": _file,
    "zendesk": _vendor("zendesk"),
    "intercom": _vendor("intercom"),
    "salesforce": _vendor("salesforce"),
    "hubspot": _vendor("hubspot"),
}
