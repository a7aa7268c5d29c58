"""Agents who may sign in to the console: a YAML file of usernames, display names and
password hashes (PBKDF2-SHA256), and a role: `agent` (the default, also for entries written
before roles existed) or `manager` (may also open the shop's analytics). `./aftersales agent
add USER "Name" [--role manager]` maintains it; on a fresh install a `demo` agent (role
`agent`) with a random password is created and the password printed once, so the console
is reachable with nothing configured."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml

from bot.files import write_private

ITERATIONS = 200_000
ROLES = ("agent", "manager")


class AgentsFileError(ValueError):
    """The agents file is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class Agent:
    username: str
    name: str
    password_hash: str
    role: str = "agent"  # one of ROLES

    @property
    def is_manager(self) -> bool:
        return self.role == "manager"

    def public(self) -> dict[str, str]:
        return {"username": self.username, "name": self.name, "role": self.role}


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, ITERATIONS)
    return "pbkdf2_sha256${}${}${}".format(
        ITERATIONS, base64.b64encode(salt).decode(), base64.b64encode(digest).decode())


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, iterations, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "pbkdf2_sha256":
        return False
    candidate = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    return hmac.compare_digest(candidate, base64.b64decode(digest))


def load_agents(path: Path) -> dict[str, Agent]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise AgentsFileError(f"{path}: cannot read agents: {exc}") from exc
    entries = data.get("agents") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise AgentsFileError(f"{path}: expected a mapping 'agents: {{username: {{name, password_hash}}}}'")
    agents: dict[str, Agent] = {}
    for username, entry in entries.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("password_hash"), str):
            raise AgentsFileError(f"{path}: agent '{username}' needs a 'password_hash'")
        role = entry.get("role") or "agent"
        if role not in ROLES:
            raise AgentsFileError(f"{path}: agent '{username}' has role {role!r}; expected one of {', '.join(ROLES)}")
        agents[str(username)] = Agent(str(username), str(entry.get("name") or username), entry["password_hash"],
                                      str(role))
    return agents


def save_agents(path: Path, agents: dict[str, Agent]) -> None:
    body = {"agents": {a.username: {"name": a.name, "password_hash": a.password_hash, "role": a.role}
                       for a in agents.values()}}
    # Whole or not at all: a running gateway reloading it never reads half a file.
    write_private(path, "# Agents of the console. Add one with: ./aftersales agent add USERNAME \"Display Name\"\n"
                  + yaml.safe_dump(body, allow_unicode=True, sort_keys=True))


def write_agents_file(path: Path, agents: dict[str, tuple[str, str]], managers: frozenset[str] = frozenset()) -> None:
    """Write agents given as username -> (display name, password); `managers` get that role."""
    save_agents(path, {u: Agent(u, name, hash_password(pw), "manager" if u in managers else "agent")
                       for u, (name, pw) in agents.items()})


def ensure_agents_file(path: Path) -> str | None:
    """Create the file with a `demo` agent when missing; returns the new password, once."""
    if path.exists():
        return None
    password = secrets.token_urlsafe(9)
    write_agents_file(path, {"demo": ("Demo Agent", password)})
    return password
