"""Helpers for tests about run rows and the processes that own them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def gone_owner() -> str:
    """The owner string of a process that has run and exited."""
    done = subprocess.run([sys.executable, "-c", "from pipeline.runs import process_owner; print(process_owner())"],
                          capture_output=True, text=True, cwd=ROOT, check=True)
    return done.stdout.strip()
