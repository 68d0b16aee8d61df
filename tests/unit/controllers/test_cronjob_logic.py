"""CronJobs: schedule parsing and evaluation (kumo.model.cron), the Job a CronJob makes and
the history it keeps (kumo.platform.controllers.cronjob), validation. Table-driven."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kumo.model.batch import CronJob
from kumo.model.cron import CronError, most_recent, parse
from kumo.platform.controllers.cronjob import job_for, job_name, jobs_to_delete

UTC = datetime.UTC


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


# (schedule, time zone, after, the next two runs (UTC))
NEXT_CASES = [
    ("*/15 * * * *", None, "2026-11-29T05:50", ["2026-11-29T06:00", "2026-11-29T06:15"]),
    ("@hourly", None, "2026-11-29T05:50", ["2026-11-29T06:00", "2026-11-29T07:00"]),
    ("@daily", None, "2026-11-29T05:50", ["2026-11-30T00:00", "2026-12-01T00:00"]),
    ("@weekly", None, "2026-11-29T05:50", ["2026-12-06T00:00", "2026-12-13T00:00"]),
    ("0 0 1 1 *", None, "2026-11-29T05:50", ["2027-01-01T00:00", "2028-01-01T00:00"]),
    ("30 9 * * mon-fri", None, "2026-11-27T10:00", ["2026-11-30T09:30", "2026-12-01T09:30"]),
    ("0 12 * JAN,jul *", None, "2026-11-29T00:00", ["2027-01-01T12:00", "2027-01-02T12:00"]),
    ("5-10/5 3 * * *", None, "2026-11-29T00:00", ["2026-11-29T03:05", "2026-11-29T03:10"]),
    ("0 0 1 * 1", None, "2026-11-29T05:50", ["2026-11-30T00:00", "2026-12-01T00:00"]),
    ("0 0 * * 7", None, "2026-11-29T05:50", ["2026-12-06T00:00", "2026-12-13T00:00"]),
    ("0 0 29 2 *", None, "2026-11-29T05:50", ["2028-02-29T00:00", "2032-02-29T00:00"]),
    # 09:00 in Berlin is 08:00 UTC in winter, 07:00 UTC in summer
    ("0 9 * * *", "Europe/Berlin", "2026-03-28T09:00", ["2026-03-29T07:00", "2026-03-30T07:00"]),
    # 02:30 does not exist in Berlin on 2026-03-29 (clocks jump from 02:00 to 03:00)
    ("30 2 * * *", "Europe/Berlin", "2026-03-27T12:00", ["2026-03-28T01:30", "2026-03-30T00:30"]),
]


@pytest.mark.parametrize(
    ("expression", "zone", "after", "runs"), NEXT_CASES, ids=[c[0] for c in NEXT_CASES]
)
def test_next_runs(expression: str, zone: str | None, after: str, runs: list[str]) -> None:
    schedule = parse(expression, zone)
    first = schedule.next(at(after))
    assert first is not None
    second = schedule.next(first)
    assert [first, second] == [at(r) for r in runs]


def test_impossible_dates_never_run() -> None:
    assert parse("0 0 30 2 *").next(at("2026-01-01T00:00")) is None


@pytest.mark.parametrize(
    ("expression", "zone", "message"),
    [
        ("* * * *", None, "expected 5 fields"),
        ("60 * * * *", None, "minute: 60 is out of range 0-59"),
        ("* 24 * * *", None, "hour: 24 is out of range 0-23"),
        ("* * 0 * *", None, "day of month: 0 is out of range 1-31"),
        ("* * * FOO *", None, "month: 'FOO' is not a number or a name"),
        ("*/0 * * * *", None, "step '0' must be a positive number"),
        ("5-1 * * * *", None, "range '5-1' runs backwards"),
        ("? * * * *", None, "'?' is only allowed in the day fields"),
        ("@fortnightly", None, "unknown macro"),
        ("TZ=UTC * * * * *", None, "spec.timeZone"),
        ("* * * * *", "Mars/Olympus", "unknown time zone"),
    ],
)
def test_parse_errors_say_what_is_wrong(expression: str, zone: str | None, message: str) -> None:
    with pytest.raises(CronError, match=message.replace("(", r"\(").replace("?", r"\?")):
        parse(expression, zone)


def test_most_recent_takes_only_the_latest_missed_time() -> None:
    now = at("2026-11-29T05:50:30")
    every_minute = parse("* * * * *")
    assert most_recent(every_minute, at("2026-11-29T05:47:10"), now) == (at("2026-11-29T05:50"), 3)
    # a month of downtime: one run, and the count says many were missed
    assert most_recent(every_minute, at("2026-10-29T00:00"), now) == (at("2026-11-29T05:50"), 101)
    yearly = parse("@yearly")
    assert most_recent(yearly, at("2019-06-01T00:00"), now) == (at("2026-01-01T00:00"), 7)
    assert most_recent(yearly, at("2026-06-01T00:00"), now) == (None, 0)


def cronjob(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "report", "namespace": "team", "uid": "u-1"},
        "spec": {
            "schedule": "*/5 * * * *",
            "jobTemplate": {
                "metadata": {"labels": {"app": "report"}, "annotations": {"team": "a"}},
                "spec": {"template": {"spec": {"containers": [{"name": "r", "image": "x"}]}}},
            },
            **spec,
        },
    }


def test_the_job_for_a_scheduled_time() -> None:
    scheduled = at("2026-11-29T06:00")
    job = job_for(cronjob(), scheduled)
    meta = job["metadata"]
    assert meta["name"] == job_name(cronjob(), scheduled) == "report-29932200"
    assert meta["namespace"] == "team"
    assert meta["labels"] == {"app": "report"}
    assert meta["annotations"] == {
        "team": "a",
        "batch.kubernetes.io/cronjob-scheduled-timestamp": "2026-11-29T06:00:00Z",
    }
    (owner,) = meta["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "CronJob",
        "report",
        "u-1",
        True,
    )
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "x"


def finished(name: str, kind: str, when: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {
            "completionTime": f"{when}:00Z" if kind == "Complete" else None,
            "conditions": [{"type": kind, "status": "True", "lastTransitionTime": f"{when}:00Z"}],
        },
    }


def test_history_limits_delete_the_oldest_finished_jobs() -> None:
    jobs = [
        finished("ok-3", "Complete", "2026-11-29T03:00"),
        finished("ok-1", "Complete", "2026-11-29T01:00"),
        finished("ok-2", "Complete", "2026-11-29T02:00"),
        finished("bad-1", "Failed", "2026-11-29T01:30"),
        finished("bad-2", "Failed", "2026-11-29T02:30"),
        {"metadata": {"name": "running"}, "status": {}},
    ]
    doomed = [j["metadata"]["name"] for j in jobs_to_delete(jobs, 2, 1)]
    assert doomed == ["ok-1", "bad-1"]
    assert [j["metadata"]["name"] for j in jobs_to_delete(jobs, 0, 0)] == [
        "ok-1", "ok-2", "ok-3", "bad-1", "bad-2",
    ]  # fmt: skip


def test_validation_names_the_field() -> None:
    body = cronjob(schedule="61 * * * *", concurrencyPolicy="Sometimes", startingDeadlineSeconds=-1)
    body["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    problems = dict(CronJob.model_validate(body).validate_semantics())
    assert "minute: 61 is out of range" in problems["spec.schedule"]
    assert "Unsupported value" in problems["spec.concurrencyPolicy"]
    assert "greater than or equal to 0" in problems["spec.startingDeadlineSeconds"]
    assert "OnFailure" in problems["spec.jobTemplate.spec.template.spec.restartPolicy"]
    zoned = cronjob(timeZone="Nowhere/Land")
    assert (
        "unknown time zone"
        in dict(CronJob.model_validate(zoned).validate_semantics())["spec.timeZone"]
    )
