"""The shape of the code: the core (`bot`) imports nothing that plugs into it; each plugin
(a channel, the handoff module, the flows) imports only the core and itself; only the
wiring layer (`gateway`) imports them all. Read from the source, imports inside functions
included, so a shortcut taken anywhere shows up here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "channels", "flows", "gateway", "handoff")
CHANNELS = ("webchat", "telegram", "slack")


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def owner(module: str) -> str | None:
    """"bot", "handoff", "flows", "gateway", or "channels.<name>" for our own modules."""
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return None
    if parts[0] == "channels":
        return ".".join(parts[:2]) if len(parts) > 1 else "channels"
    return parts[0]


def offending(package: str, allowed: set[str]) -> list[str]:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        here = owner(".".join(path.relative_to(ROOT).with_suffix("").parts))
        for module in imports_of(path):
            target = owner(module)
            if target is not None and target != here and target not in allowed:
                bad.append(f"{path.relative_to(ROOT)} imports {module}")
    return bad


def test_the_core_imports_none_of_its_plugins() -> None:
    assert offending("bot", set()) == []


@pytest.mark.parametrize("plugin", ["handoff", "flows", *(f"channels/{c}" for c in CHANNELS)])
def test_a_plugin_imports_only_the_core_and_itself(plugin: str) -> None:
    assert offending(plugin, {"bot"}) == []
