"""Cron schedules as CronJobs use them: five fields (minute hour day-of-month month
day-of-week) or a macro (``@hourly``, ``@daily``/``@midnight``, ``@weekly``, ``@monthly``,
``@yearly``/``@annually``).

What callers may rely on:
- fields take ``*`` (and ``?`` for the day fields), numbers, ranges ``a-b``, steps ``*/n``,
  ``a-b/n`` and ``a/n`` (a to the field's end), and comma lists; months and weekdays also
  take names (``JAN``, ``mon``); weekday 7 is Sunday, like 0;
- a day matches when both day fields match, except that when neither of them is ``*`` either
  may match (classic cron: ``0 0 1 * MON`` runs on the 1st and on Mondays);
- ``parse`` raises ``CronError`` naming the field and what is wrong;
- ``Schedule.next(after)`` is the first time strictly after ``after`` (to the minute) in the
  schedule's time zone (wall-clock fields; a time skipped by a daylight-saving jump does not
  happen), or None if there is none within five years (``0 0 30 2 *``).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from zoneinfo import ZoneInfo

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    )
}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
# (name, low, high, names)
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_HORIZON = datetime.timedelta(days=5 * 366)


class CronError(ValueError):
    """The schedule is not valid; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # the day-of-month field was * (or ?)
    any_weekday: bool
    zone: datetime.tzinfo

    def _day_matches(self, when: datetime.datetime) -> bool:
        in_month = when.day in self.days
        in_week = (when.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def next(self, after: datetime.datetime) -> datetime.datetime | None:
        local = after.astimezone(self.zone).replace(tzinfo=None, second=0, microsecond=0)
        when = local + datetime.timedelta(minutes=1)
        limit = local + _HORIZON
        while when <= limit:
            if when.month not in self.months:
                year, month = (
                    (when.year + 1, 1) if when.month == 12 else (when.year, when.month + 1)
                )
                when = datetime.datetime(year, month, 1)
                continue
            if not self._day_matches(when):
                when = datetime.datetime(when.year, when.month, when.day) + datetime.timedelta(
                    days=1
                )
                continue
            if when.hour not in self.hours:
                when = when.replace(minute=0) + datetime.timedelta(hours=1)
                continue
            if when.minute not in self.minutes:
                when += datetime.timedelta(minutes=1)
                continue
            aware = when.replace(tzinfo=self.zone)
            # a wall-clock time that a daylight-saving jump skips does not round-trip
            if aware.astimezone(datetime.UTC).astimezone(self.zone).replace(tzinfo=None) != when:
                when += datetime.timedelta(minutes=1)
                continue
            return aware.astimezone(datetime.UTC)
        return None


def _value(text: str, field: str, low: int, high: int, names: dict[str, int]) -> int:
    upper = text.upper()
    if upper in names:
        return names[upper]
    if not text.isdigit():
        raise CronError(f"{field}: {text!r} is not a number{' or a name' if names else ''}")
    number = int(text)
    if not low <= number <= high:
        raise CronError(f"{field}: {number} is out of range {low}-{high}")
    return number


def _parse_field(text: str, index: int) -> tuple[frozenset[int], bool]:
    field, low, high, names = _FIELDS[index]
    values: set[int] = set()
    star = False
    for part in text.split(","):
        if not part:
            raise CronError(f"{field}: empty list entry in {text!r}")
        span, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{field}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if span in ("*", "?"):
            if span == "?" and index not in (2, 4):
                raise CronError(f"{field}: '?' is only allowed in the day fields")
            first, last = low, high
            star = star or not slash
        elif "-" in span:
            start, _, end = span.partition("-")
            first = _value(start, field, low, high, names)
            last = _value(end, field, low, high, names)
            if first > last:
                raise CronError(f"{field}: range {span!r} runs backwards")
        else:
            first = _value(span, field, low, high, names)
            last = high if slash else first
        values.update(range(first, last + 1, step))
    if index == 4 and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values), star


def parse(schedule: str, zone: str | None = None) -> Schedule:
    """The schedule, evaluated in IANA time zone ``zone`` (UTC when None)."""
    text = schedule.strip()
    if text.startswith(("TZ=", "CRON_TZ=")):
        raise CronError("time zones go in spec.timeZone, not in the schedule")
    text = MACROS.get(text.lower(), text)
    if text.startswith("@"):
        raise CronError(f"unknown macro {schedule!r}; known: {', '.join(sorted(MACROS))}")
    parts = text.split()
    if len(parts) != 5:
        raise CronError(
            f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}"
        )
    try:
        tz: datetime.tzinfo = ZoneInfo(zone) if zone else datetime.UTC
    except (ValueError, KeyError) as exc:
        raise CronError(f"unknown time zone {zone!r}") from exc
    fields = [_parse_field(part, i) for i, part in enumerate(parts)]
    return Schedule(
        minutes=fields[0][0],
        hours=fields[1][0],
        days=fields[2][0],
        months=fields[3][0],
        weekdays=fields[4][0],
        any_day=fields[2][1],
        any_weekday=fields[4][1],
        zone=tz,
    )


def most_recent(
    schedule: Schedule, earliest: datetime.datetime, now: datetime.datetime
) -> tuple[datetime.datetime | None, int]:
    """The latest scheduled time in (``earliest``, ``now``] and how many there were (counted
    up to 101: more only means "many were missed")."""
    found: datetime.datetime | None = None
    count = 0
    # Look back from now in growing windows: few steps, however long ago ``earliest`` is.
    for window in (
        datetime.timedelta(hours=2),
        datetime.timedelta(days=2),
        datetime.timedelta(days=40),
        datetime.timedelta(days=400),
        _HORIZON,
    ):
        start = max(earliest, now - window)
        when = schedule.next(start)
        while when is not None and when <= now:
            found = when
            when = schedule.next(when)
        if found is not None or start == earliest:
            break
    if found is None:
        return None, 0
    when = schedule.next(earliest)
    while when is not None and when <= now and count <= 100:
        count += 1
        when = schedule.next(when)
    return found, count
