"""Settings of the handoff module, read from the gateway's environment (`Settings.environ`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.config import ConfigError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class WorkingHours:
    opens: dt.time
    closes: dt.time  # 00:00 means midnight at the end of the day
    days: frozenset[int]  # 0 = Monday
    zone: ZoneInfo

    def _close_dt(self, day: dt.date) -> dt.datetime:
        if self.closes == dt.time(0, 0):
            return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0, 0), self.zone)
        return dt.datetime.combine(day, self.closes, self.zone)

    def is_open(self, at: dt.datetime) -> bool:
        local = at.astimezone(self.zone)
        if local.weekday() not in self.days:
            return False
        opens = dt.datetime.combine(local.date(), self.opens, self.zone)
        return opens <= local < self._close_dt(local.date())

    def next_opening(self, at: dt.datetime) -> dt.datetime:
        """`at` itself when open, else the next time the team starts working."""
        local = at.astimezone(self.zone)
        for offset in range(8):
            day = local.date() + dt.timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            opens = dt.datetime.combine(day, self.opens, self.zone)
            if local < self._close_dt(day):
                return max(opens, local)
        return local


@dataclass(frozen=True)
class HandoffSettings:
    agents_file: Path
    hours: WorkingHours
    first_response_minutes: int = 30
    minutes_per_case: float = 5.0
    canned_file: Path | None = None


def _parse_hours(raw: str) -> tuple[dt.time, dt.time]:
    start, sep, end = raw.partition("-")
    if not sep:
        raise ValueError("expected HH:MM-HH:MM")
    opens = dt.time.fromisoformat(start.strip())
    closes = dt.time(0, 0) if end.strip() == "24:00" else dt.time.fromisoformat(end.strip())
    if closes != dt.time(0, 0) and closes <= opens:
        raise ValueError("closing time must be after opening time")
    return opens, closes


def _parse_days(raw: str) -> frozenset[int]:
    days: set[int] = set()
    for part in raw.lower().split(","):
        part = part.strip()
        if "-" in part:
            a, b = (DAYS.index(p.strip()[:3]) for p in part.split("-", 1))
            days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
        elif part:
            days.add(DAYS.index(part[:3]))
    if not days:
        raise ValueError("no days")
    return frozenset(days)


def load_handoff_settings(env: Mapping[str, str], data_dir: Path) -> HandoffSettings:
    problems: list[str] = []
    raw_hours = env.get("HANDOFF_HOURS") or "00:00-24:00"
    try:
        opens, closes = _parse_hours(raw_hours)
    except ValueError as exc:
        problems.append(f"HANDOFF_HOURS={raw_hours!r}: {exc} (e.g. 09:00-21:00)")
        opens, closes = dt.time(0, 0), dt.time(0, 0)
    raw_days = env.get("HANDOFF_DAYS") or "mon-sun"
    try:
        days = _parse_days(raw_days)
    except ValueError:
        problems.append(f"HANDOFF_DAYS={raw_days!r}: expected days like mon-fri or mon,wed,sat")
        days = frozenset(range(7))
    raw_zone = env.get("HANDOFF_TIMEZONE") or "Asia/Shanghai"
    try:
        zone = ZoneInfo(raw_zone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"HANDOFF_TIMEZONE={raw_zone!r}: not a time zone name like Asia/Shanghai")
        zone = ZoneInfo("UTC")

    def number(name: str, default: float) -> float:
        raw = env.get(name)
        if not raw:
            return default
        try:
            value = float(raw)
            if value <= 0:
                raise ValueError
            return value
        except ValueError:
            problems.append(f"{name}={raw!r}: must be a positive number")
            return default

    settings = HandoffSettings(
        agents_file=Path(env.get("AGENTS_FILE") or data_dir / "agents.yml"),
        hours=WorkingHours(opens, closes, days, zone),
        first_response_minutes=int(number("HANDOFF_FIRST_RESPONSE_MINUTES", 30)),
        minutes_per_case=number("HANDOFF_MINUTES_PER_CASE", 5.0),
        canned_file=Path(env["CANNED_REPLIES_FILE"]) if env.get("CANNED_REPLIES_FILE") else None,
    )
    if problems:
        raise ConfigError(problems)
    return settings
