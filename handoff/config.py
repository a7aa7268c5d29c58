"""Settings of the handoff module, read from the gateway's environment (`Settings.environ`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.config import ConfigError
from bot.settings_schema import Setting, SettingsReader

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
    resolution_hours: float = 24.0
    first_response_warning_minutes: float = 10.0
    resolution_warning_minutes: float = 120.0
    supervisors: tuple[str, ...] = ()  # agents a breached conversation is escalated to
    sla_check_seconds: float = 15.0


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


def _hours(raw: str) -> tuple[dt.time, dt.time]:
    try:
        return _parse_hours(raw)
    except ValueError as exc:
        raise ValueError(f"{exc} (e.g. 09:00-21:00)") from None


def _days(raw: str) -> frozenset[int]:
    try:
        return _parse_days(raw)
    except ValueError:
        raise ValueError("expected days like mon-fri or mon,wed,sat") from None


def _zone(raw: str) -> ZoneInfo:
    try:
        return ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("not a time zone name like Asia/Shanghai") from None


def _positive(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise ValueError("must be a positive number")
    return value


def _warnings(raw: str) -> tuple[float, float]:
    parts = [p.strip() for p in raw.split(",")]
    if len(parts) != 2:
        raise ValueError("expected two numbers of minutes: before the first response, before resolution (e.g. 10,120)")
    first, resolution = (_positive(p) for p in parts)
    return first, resolution


def _usernames(raw: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    for name in names:
        if not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise ValueError(f"{name!r} is not an agent's username")
    return names


ALL_DAY = (dt.time(0, 0), dt.time(0, 0))

# The handoff module's settings, as the README's table shows them (`./aftersales settings`).
AGENTS_FILE = Setting[Path | None]("AGENTS_FILE", None, Path, "who may sign in to the console",
                                   shown_default="`DATA_DIR/agents.yml`")
HANDOFF_HOURS = Setting("HANDOFF_HOURS", ALL_DAY, _hours, "the team's working hours, e.g. `09:00-21:00`",
                        shown_default="`00:00-24:00`")
HANDOFF_DAYS = Setting("HANDOFF_DAYS", frozenset(range(7)), _days, "the team's working days, e.g. `mon-fri`",
                       shown_default="`mon-sun`")
HANDOFF_TIMEZONE = Setting("HANDOFF_TIMEZONE", ZoneInfo("Asia/Shanghai"), _zone,
                           "the time zone of the working hours and of the times shoppers are told",
                           shown_default="`Asia/Shanghai`")
HANDOFF_FIRST_RESPONSE_MINUTES = Setting("HANDOFF_FIRST_RESPONSE_MINUTES", 30.0, _positive, "first-response SLA")
HANDOFF_MINUTES_PER_CASE = Setting("HANDOFF_MINUTES_PER_CASE", 5.0, _positive,
                                   "for the expected wait told to shoppers")
CANNED_REPLIES_FILE = Setting[Path | None](
    "CANNED_REPLIES_FILE", None, Path,
    "YAML list of `{title, text: {en, zh}}` (or `{title, text}`: one text for both); "
    "`{order}`, `{item}`, `{case}`, `{name}` are filled from the conversation",
    shown_default="built-in EN/ZH replies")
HANDOFF_RESOLUTION_HOURS = Setting("HANDOFF_RESOLUTION_HOURS", 24.0, _positive,
                                   "resolution SLA: a handed-off conversation resolved or handed back within it")
HANDOFF_SLA_WARNING_MINUTES = Setting("HANDOFF_SLA_WARNING_MINUTES", (10.0, 120.0), _warnings,
                                      "how long before the first-response and the resolution deadline the team "
                                      "is warned", shown_default="`10,120`")
HANDOFF_SUPERVISORS = Setting[tuple[str, ...]]("HANDOFF_SUPERVISORS", (), _usernames,
                              "agents (usernames, comma-separated) a conversation is escalated to when its "
                              "first response is late; they are named in the breach notice",
                              shown_default="none")
HANDOFF_SLA_CHECK_SECONDS = Setting("HANDOFF_SLA_CHECK_SECONDS", 15.0, _positive, "how often SLA deadlines are checked")
HANDOFF_SETTINGS = (AGENTS_FILE, HANDOFF_HOURS, HANDOFF_DAYS, HANDOFF_TIMEZONE, HANDOFF_FIRST_RESPONSE_MINUTES,
                    HANDOFF_RESOLUTION_HOURS, HANDOFF_SLA_WARNING_MINUTES, HANDOFF_SUPERVISORS,
                    HANDOFF_SLA_CHECK_SECONDS, HANDOFF_MINUTES_PER_CASE, CANNED_REPLIES_FILE)


def load_handoff_settings(env: Mapping[str, str], data_dir: Path) -> HandoffSettings:
    r = SettingsReader(env)
    opens, closes = r.get(HANDOFF_HOURS)
    settings = HandoffSettings(
        agents_file=r.get(AGENTS_FILE) or data_dir / "agents.yml",
        hours=WorkingHours(opens, closes, r.get(HANDOFF_DAYS), r.get(HANDOFF_TIMEZONE)),
        first_response_minutes=int(r.get(HANDOFF_FIRST_RESPONSE_MINUTES)),
        minutes_per_case=r.get(HANDOFF_MINUTES_PER_CASE),
        canned_file=r.get(CANNED_REPLIES_FILE),
        resolution_hours=r.get(HANDOFF_RESOLUTION_HOURS),
        first_response_warning_minutes=r.get(HANDOFF_SLA_WARNING_MINUTES)[0],
        resolution_warning_minutes=r.get(HANDOFF_SLA_WARNING_MINUTES)[1],
        supervisors=r.get(HANDOFF_SUPERVISORS),
        sla_check_seconds=r.get(HANDOFF_SLA_CHECK_SECONDS),
    )
    if r.problems:
        raise ConfigError(r.problems)
    return settings
