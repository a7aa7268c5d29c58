"""The bot designer's rules as one versioned set, and the live copy a running server serves.

The rules are four YAML files in one directory, `FLOWS_RULES_DIR` (default: this package's
own directory; a relative path is from the repository's root): `policies.yml`,
`understanding.yml`, `knowledge_base.yml` and `texts.yml`. `load_rules()` validates them
together into a `RuleSet`; its `version` is a hash of the four files' contents, so the same
files are always the same version.

`LiveRules` is what a running server holds (the action server, and the Rasa server's
situation router): the rules it serves now, and the versions conversations in progress
still use. `check()` is cheap enough for the start of every action: it compares the
files' modification times and sizes with what it saw last, and only when they changed
reads and validates the edit. A valid edit serves from then on; an invalid one is refused
with the error in the log (file, entry, field: see flows/policies.py) and the rules that
were serving keep serving; the same broken content is not reported twice.

A version's files are also kept in the flows database (`RulesArchive`, table
`rules_versions`), so that a conversation that started under a version still gets it
after the action server restarted. Nothing here runs at import.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from flows.db import REPO_ROOT, connect, enable_wal
from flows.knowledge import KnowledgeBase, load_knowledge
from flows.policies import Policies, PolicyError, load_policies
from flows.reading import Reader, Understanding, load_understanding
from flows.texts import Texts, load_texts

log = logging.getLogger("flows.rules")

PACKAGE_DIR = Path(__file__).resolve().parent
RULE_FILES = ("policies.yml", "understanding.yml", "knowledge_base.yml", "texts.yml")
KEEP_VERSIONS = 8  # versions kept ready in memory besides the current one (older ones come from the archive)

_ARCHIVE_SCHEMA = """
CREATE TABLE IF NOT EXISTS rules_versions (
    version TEXT PRIMARY KEY, first_served REAL NOT NULL, files TEXT NOT NULL);
"""


class RulesError(PolicyError):
    """The rules directory cannot be read (a file is missing or unreadable)."""


def rules_dir() -> Path:
    """Where the rules are read from: `FLOWS_RULES_DIR` (a relative path is taken from the
    repository's root, whatever the process's directory), else the flows package itself."""
    configured = os.environ.get("FLOWS_RULES_DIR", "").strip()
    return (REPO_ROOT / configured).resolve() if configured else PACKAGE_DIR


def version_of(contents: Mapping[str, str]) -> str:
    """The version of these files' contents: 12 hex digits of their hash."""
    digest = hashlib.sha256()
    for name in RULE_FILES:
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(contents.get(name, "").encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class RuleSet:
    """One validated version of the rules, everything built from it."""

    version: str
    policies: Policies
    understanding: Understanding
    kb: KnowledgeBase
    texts: Texts
    reader: Reader
    contents: Mapping[str, str]  # file name -> the text this version was built from


def read_contents(directory: Path) -> dict[str, str]:
    contents: dict[str, str] = {}
    for name in RULE_FILES:
        path = directory / name
        try:
            contents[name] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RulesError(f"{path}: cannot read the rules: {exc}") from exc
    return contents


def build_rules(directory: Path, contents: Mapping[str, str]) -> RuleSet:
    """The rule set of these contents (the files of `directory`, as read), validated
    together; a `PolicyError` naming the file, the entry and the field if any is wrong."""
    policies = load_policies(directory / "policies.yml", contents["policies.yml"])
    understanding = load_understanding(directory / "understanding.yml", contents["understanding.yml"])
    kb = load_knowledge(directory / "knowledge_base.yml", policies, contents["knowledge_base.yml"])
    texts = load_texts(directory / "texts.yml", contents["texts.yml"])
    return RuleSet(version=version_of(contents), policies=policies, understanding=understanding, kb=kb, texts=texts,
                   reader=Reader(policies, understanding), contents=dict(contents))


def load_rules(directory: Path | None = None) -> RuleSet:
    """The rules of `directory` (default `rules_dir()`), validated."""
    directory = directory or rules_dir()
    return build_rules(directory, read_contents(directory))


def rules_from_archive(contents: Mapping[str, str]) -> RuleSet:
    """A version kept in the archive, rebuilt (it was validated when it was first served)."""
    with tempfile.TemporaryDirectory(prefix="rules-") as tmp:
        return build_rules(Path(tmp), contents)


class RulesArchive:
    """Every version a server served, by version, in the flows database. Rules hold no
    personal data: they are stored in clear and kept."""

    def __init__(self, path: Path) -> None:
        self.path = path
        enable_wal(path)
        with connect(path) as conn:
            conn.executescript(_ARCHIVE_SCHEMA)

    def keep(self, rules: RuleSet) -> None:
        with connect(self.path) as conn:
            conn.execute("INSERT OR IGNORE INTO rules_versions VALUES (?, ?, ?)",
                         (rules.version, time.time(), json.dumps(dict(rules.contents), ensure_ascii=False)))

    def contents(self, version: str) -> dict[str, str] | None:
        with connect(self.path) as conn:
            row = conn.execute("SELECT files FROM rules_versions WHERE version = ?", (version,)).fetchone()
        if row is None:
            return None
        files = json.loads(row["files"])
        return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else None


Stamp = tuple[tuple[int, int, int] | None, ...]


class LiveRules:
    """The rules a running server serves, following the designer's edits (module docstring).

    The first load happens here and fails loudly (a server does not start on broken rules);
    after that, a broken edit never replaces working rules."""

    def __init__(self, directory: Path | None = None, archive: RulesArchive | None = None,
                 keep: int = KEEP_VERSIONS) -> None:
        self.directory = directory or rules_dir()
        self.archive = archive
        self._keep = keep
        self._lock = threading.Lock()  # one reload at a time (they run in worker threads)
        self._known_lock = threading.Lock()  # the versions kept, read by the event loop's thread too
        self._stamp = self._stat()
        self._current = load_rules(self.directory)
        self._known: OrderedDict[str, RuleSet] = OrderedDict({self._current.version: self._current})
        self._refused: str | None = None  # the version of the content last refused, reported once
        self.refusals = 0  # how many edits were refused since the start
        if archive is not None:
            archive.keep(self._current)
        log.info("rules version %s serving (from %s)", self._current.version, self.directory)

    @property
    def current(self) -> RuleSet:
        return self._current

    def _stat(self) -> Stamp:
        stamps: list[tuple[int, int, int] | None] = []
        for name in RULE_FILES:
            try:
                st = os.stat(self.directory / name)
            except OSError:
                stamps.append(None)
            else:
                stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(stamps)

    def changed(self) -> bool:
        """Whether the files look different from when they were last checked (a few stat calls)."""
        return self._stat() != self._stamp

    def check(self) -> RuleSet:
        """The rules to serve now: the current ones, or an edit of the files, validated."""
        if not self.changed():
            return self._current
        with self._lock:
            stamp = self._stat()
            if stamp == self._stamp:
                return self._current
            self._stamp = stamp
            try:
                contents = read_contents(self.directory)
            except RulesError as exc:
                self._refuse("unreadable", exc)
                return self._current
            version = version_of(contents)
            if version == self._current.version:  # an edit undone: a later broken one is reported again
                self._refused = None
                return self._current
            if version == self._refused:
                return self._current
            try:
                rules = build_rules(self.directory, contents)
            except PolicyError as exc:
                self._refuse(version, exc)
                return self._current
            previous, self._current, self._refused = self._current, rules, None
            self._remember(rules)
            if self.archive is not None:
                try:
                    self.archive.keep(rules)
                except Exception:  # the database is busy or away: the version still serves
                    log.exception("rules version %s could not be archived", rules.version)
            log.info("rules edit accepted: version %s serves from now on (was %s); conversations in a flow "
                     "keep the version they started with", rules.version, previous.version)
            return rules

    async def refreshed(self) -> RuleSet:
        """`check()` for a coroutine: reading and validating an edit runs in a worker thread."""
        if not self.changed():
            return self._current
        return await asyncio.to_thread(self.check)

    def _refuse(self, version: str, error: Exception) -> None:
        if version == self._refused:
            return
        self._refused = version
        self.refusals += 1
        log.error("rules edit refused, version %s keeps serving: %s", self._current.version, error)

    def _remember(self, rules: RuleSet) -> None:
        with self._known_lock:
            self._known[rules.version] = rules
            self._known.move_to_end(rules.version)
            while len(self._known) > self._keep + 1:
                oldest = next(iter(self._known))
                if oldest == self._current.version:
                    self._known.move_to_end(oldest)
                    continue
                del self._known[oldest]

    def get(self, version: str | None) -> RuleSet:
        """The rules of `version` (a conversation's), or the current ones when it has none or
        the version is known neither here nor in the archive."""
        if not version or version == self._current.version:
            return self._current
        with self._known_lock:
            known = self._known.get(version)
            if known is not None:
                self._known.move_to_end(version)
                return known
        contents = self.archive.contents(version) if self.archive is not None else None
        if contents is not None:
            try:
                rules = rules_from_archive(contents)
            except PolicyError as exc:  # the code changed since that version was served
                log.warning("rules version %s no longer loads (%s): the current version %s decides",
                            version, exc, self._current.version)
                return self._current
            self._remember(rules)
            return rules
        log.warning("rules version %s is not known here: the current version %s decides",
                    version, self._current.version)
        return self._current
