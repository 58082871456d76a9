"""Debian's Chromium for the browser tests: found, or the tests skip on a developer's machine and fail in CI."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def require_chromium() -> str:
    """The browser's path; skips the test when it is missing, or fails it when ``CI`` is set.

    CI must run the browser tests (``.ci/run`` installs the browser), so there a missing one is an error,
    not a quiet skip; elsewhere ``make test`` still passes and says what was left out.
    """
    if Path(CHROMIUM).is_file():
        return CHROMIUM
    message = f"chromium is not installed (looked for {CHROMIUM}); `apt-get install chromium` installs it"
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"{message}: CI must run the browser tests", pytrace=False)
    pytest.skip(message)
