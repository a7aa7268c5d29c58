"""Console sign-in guards: a lockout per (account, address) with growing delays, and a password
check that runs off the event loop and takes as long for an unknown username as for a known one.

Behind a reverse proxy every agent shares the proxy's address, so a lock per address alone would
let five wrong guesses at one account lock the whole team out; keyed by account *and* address,
the guessed account is locked for the guesser while everyone else signs in. The address is the
proxy's client only when the shop lists the proxy in TRUSTED_PROXIES (see bot/security.py)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable

from handoff.agents import ITERATIONS, Agent, check_password

MAX_FAILURES = 5  # wrong passwords in a row before the first lock
FIRST_LOCK_SECONDS = 60.0  # doubled for each further wrong password
MAX_LOCK_SECONDS = 15 * 60.0
FORGET_AFTER_SECONDS = 60 * 60.0  # a quiet hour wipes the slate
MAX_TRACKED = 10_000  # bounded memory under a spray of usernames

# A well-formed hash nobody's password matches: checking against it costs one full PBKDF2,
# so a wrong username is as slow as a wrong password and does not reveal who exists.
_NOBODY = f"pbkdf2_sha256${ITERATIONS}$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 43 + "="


@dataclass(frozen=True)
class SignInKey:
    username: str
    address: str


@dataclass
class _Failures:
    count: int
    last: float
    locked_until: float = 0.0


class SignInThrottle:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures: dict[SignInKey, _Failures] = {}

    def retry_after(self, key: SignInKey) -> float:
        """Seconds until `key` may try again (0: now)."""
        entry = self._failures.get(key)
        if entry is None:
            return 0.0
        return max(0.0, entry.locked_until - self._clock())

    def failed(self, key: SignInKey) -> float:
        """Record a wrong password; returns the lock it earned (0: none yet)."""
        now = self._clock()
        entry = self._failures.get(key)
        if entry is None or now - entry.last > FORGET_AFTER_SECONDS:
            if len(self._failures) >= MAX_TRACKED:
                self._prune(now)
            entry = self._failures[key] = _Failures(0, now)
        entry.count += 1
        entry.last = now
        if entry.count >= MAX_FAILURES:
            lock = min(FIRST_LOCK_SECONDS * 2.0 ** (entry.count - MAX_FAILURES), MAX_LOCK_SECONDS)
            entry.locked_until = now + lock
            return lock
        return 0.0

    def succeeded(self, key: SignInKey) -> None:
        self._failures.pop(key, None)

    def _prune(self, now: float) -> None:
        """Make room in one pass (amortised O(1) per failure): drop what is forgotten, then the
        oldest unlocked entries, so a spray of usernames cannot evict a lock; locked ones last."""
        target = MAX_TRACKED * 3 // 4
        for key in [k for k, e in self._failures.items() if now - e.last > FORGET_AFTER_SECONDS]:
            del self._failures[key]
        for locked_too in (False, True):
            if len(self._failures) <= target:
                return
            excess = len(self._failures) - target
            doomed = [k for k, e in self._failures.items() if locked_too or e.locked_until <= now][:excess]
            for key in doomed:
                del self._failures[key]


async def password_matches(agent: Agent | None, password: str) -> bool:
    """PBKDF2 in a worker thread (hashlib releases the GIL), so sign-ins never stall the
    shoppers' traffic; an unknown agent is checked against `_NOBODY` for the same cost."""
    stored = agent.password_hash if agent is not None else _NOBODY
    matched = await asyncio.to_thread(check_password, password, stored)
    return matched and agent is not None
