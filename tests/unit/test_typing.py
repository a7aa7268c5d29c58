"""The gateway's packages type-check under strict mypy and pass ruff (a typo in a rarely
used error path, a blocking call in a coroutine, an unused import show up here before a
shopper meets them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gateway_packages_pass_strict_mypy() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "bot", "channels", "flows", "gateway", "handoff"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_the_code_passes_ruff() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
