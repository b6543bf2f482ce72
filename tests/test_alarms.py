"""bot/alarms.py: a callback runs once its time comes, off the caller's thread and in its
context, unless cancelled first; cancel() tells whether it ran."""

from __future__ import annotations

import contextvars
import gc
import logging
import threading
import time
import weakref

import pytest

from bot.alarms import RESOLUTION_SECONDS, Alarms

who: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


@pytest.fixture
def alarms():
    alarms = Alarms()
    yield alarms
    alarms.close()


def test_a_callback_runs_once_its_time_comes_on_another_thread_in_the_setters_context(alarms) -> None:
    ran: list[tuple[float, str, str]] = []
    done = threading.Event()
    who.set("alice")
    set_at = time.monotonic()

    def note() -> None:
        ran.append((time.monotonic() - set_at, who.get(), threading.current_thread().name))
        done.set()

    alarm = alarms.after(0.2, note)
    assert done.wait(5)
    ((after, context, thread),) = ran
    assert after >= 0.2 and context == "alice" and thread != threading.current_thread().name
    assert alarm.cancel() is True  # it went off
    assert ran == [(after, context, thread)]


def test_a_cancelled_alarm_never_runs(alarms) -> None:
    ran = []
    alarm = alarms.after(0.1, lambda: ran.append("late"))
    assert alarm.cancel() is False
    time.sleep(0.1 + 4 * RESOLUTION_SECONDS)
    assert ran == [] and alarm.cancel() is False


def test_cancelling_a_running_alarm_waits_for_it_and_says_it_went_off(alarms) -> None:
    started, release = threading.Event(), threading.Event()
    steps = []

    def slow() -> None:
        started.set()
        release.wait(5)
        steps.append("callback done")

    alarm = alarms.after(0.0, slow)
    assert started.wait(5)
    threading.Timer(0.2, release.set).start()
    assert alarm.cancel() is True
    steps.append("cancel returned")
    assert steps == ["callback done", "cancel returned"]


@pytest.mark.parametrize("kind", [ValueError, OSError, RuntimeError])
def test_a_failing_callback_went_off_and_is_logged_in_its_setters_context_without_its_message(
    alarms, caplog, kind: type[Exception]
) -> None:
    done = threading.Event()
    seen: list[str] = []

    class Who(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            seen.append(who.get())
            return True

    def fail() -> None:
        done.set()
        raise kind("secret-in-the-message")

    caplog.set_level(logging.ERROR, logger="bot.alarms")
    logging.getLogger("bot.alarms").addFilter(who_filter := Who())
    try:
        who.set("bob")
        alarm = alarms.after(0.0, fail)
        assert done.wait(5)
        alarms.close()  # waits for the callback to end
    finally:
        logging.getLogger("bot.alarms").removeFilter(who_filter)
    assert alarm.cancel() is True
    assert "the alarm's callback test_a_failing_callback" in caplog.text and f"raised {kind.__name__}" in caplog.text
    assert "secret-in-the-message" not in caplog.text
    assert seen == ["bob"]  # the log line carries the request id of whoever set the alarm


def test_a_slow_callback_holds_back_no_other(alarms) -> None:
    release, quick = threading.Event(), threading.Event()
    alarms.after(0.0, lambda: release.wait(10))
    alarms.after(0.05, quick.set)
    try:
        assert quick.wait(2)  # long before the first one lets go
    finally:
        release.set()


def test_an_alarm_is_late_by_its_resolution_at_most_not_by_a_second(alarms) -> None:
    went_off = threading.Event()
    set_at = time.monotonic()
    alarms.after(0.2, went_off.set)
    assert went_off.wait(5)
    assert time.monotonic() - set_at < 0.2 + RESOLUTION_SECONDS + 0.4  # a loaded machine's scheduling on top


def test_a_cancelled_alarm_that_is_fired_anyway_does_not_run(alarms) -> None:
    """The clock may pop an alarm just as it is cancelled: fire() looks again."""
    ran = []
    alarm = alarms.after(60.0, lambda: ran.append("late"))
    assert alarm.cancel() is False
    alarm.fire()
    assert ran == [] and alarm.cancel() is False


def test_alarms_due_at_the_same_time_all_run() -> None:
    """Equal times are ordered by when they were set (alarms themselves do not compare)."""
    alarms = Alarms(runners=1, clock=lambda: 100.0)
    ran: list[int] = []
    done = threading.Event()
    try:
        for n in range(3):
            alarms.after(0.0, lambda n=n: ran.append(n))
        alarms.after(0.0, done.set)
        assert done.wait(5)
    finally:
        alarms.close()
    assert ran == [0, 1, 2]


def test_close_waits_for_a_callback_that_is_running() -> None:
    alarms = Alarms()
    started, finished = threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        time.sleep(0.3)
        finished.set()

    alarms.after(0.0, slow)
    assert started.wait(5)
    alarms.close()
    assert finished.is_set()


def test_alarms_run_in_the_order_of_their_times_whatever_the_order_they_were_set_in() -> None:
    alarms = Alarms(runners=1)
    ran: list[str] = []
    try:
        for name, seconds in (("third", 0.7), ("first", 0.1), ("second", 0.4)):
            alarms.after(seconds, lambda name=name: ran.append(name))
        deadline = time.monotonic() + 5
        while len(ran) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        alarms.close()
    assert ran == ["first", "second", "third"]


def test_a_sooner_alarm_set_while_the_clock_waits_for_a_later_one_is_not_held_back(alarms) -> None:
    alarms.after(30.0, lambda: None)
    soon = threading.Event()
    time.sleep(0.05)  # the thread now waits for the 30 s one
    alarms.after(0.05, soon.set)
    assert soon.wait(2)


def test_close_drops_what_is_not_due_and_later_alarms_never_run() -> None:
    alarms = Alarms()
    ran = []
    pending = alarms.after(0.2, lambda: ran.append("pending"))
    alarms.close()
    after_close = alarms.after(0.0, lambda: ran.append("after close"))
    time.sleep(0.2 + 4 * RESOLUTION_SECONDS)
    assert ran == []
    assert pending.cancel() is False and after_close.cancel() is False


def test_cancelled_alarms_do_not_pile_up_till_their_time(alarms) -> None:
    """A busy recbot sets and cancels an alarm per call: thousands within one timeout."""
    for _ in range(5000):
        alarms.after(10.0, lambda: None).cancel()
    live = [alarms.after(10.0, lambda: None) for _ in range(10)]
    assert len(alarms._due) < 1000  # not the 5010 set; a sweep keeps about as many cancelled as live
    assert all(alarm.waiting for alarm in live)


def test_a_cancelled_alarm_lets_go_of_what_its_callback_holds_at_once(alarms) -> None:
    class Held:
        def __call__(self) -> None: ...

    held = Held()
    kept = weakref.ref(held)
    alarm = alarms.after(60.0, held)
    del held
    assert kept() is not None  # the alarm holds it while it waits
    alarm.cancel()
    gc.collect()
    assert kept() is None
