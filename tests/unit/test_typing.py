"""The gateway's packages type-check under strict mypy (a typo in a rarely used error path
shows up here before a shopper meets it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gateway_packages_pass_strict_mypy() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "bot", "channels", "flows", "gateway", "handoff"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
