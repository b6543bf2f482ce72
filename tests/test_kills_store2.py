"""Gaps a mutation spot check found in the tests of the store package (issues 18 and 22),
on the embedded SQLite and on the local PostgreSQL, and of the apply that writes to it:
what the store hands out must match what people see (`/recording requests`, stream
tasks, drift alerts, the answer to a change) and what a sweep acts on."""

from __future__ import annotations

import pytest
from sqlalchemy import text, update

from bot.models import Target
from bot.store import Store, open_store
from bot.store.schema import drift_alerts
from tests.conftest import APP_ID
from tests.fakes.agora import Fault
from tests.legacy_schema import rebuild
from tests.switch_helpers import run
from tests.test_change_flow import final_view_text, open_form, state
from tests.test_store import CHANGES, TARGET, _obs, new_request, store  # noqa: F401 - the store fixture


def test_every_open_request_is_listed_whatever_its_state_and_no_ended_one(store: Store) -> None:  # noqa: F811
    """`/recording requests` lists what is open: pending, approved, applying; never an ended one."""
    for n, state_path in enumerate([[], ["approve"], ["approve", "claim"], ["reject"]]):
        request_id = f"r{n}"
        new_request(store, request_id, target=Target(app_id="A", entry_point=f"ep{n}", region="na"))
        state = "pending"
        for event in state_path:
            assert store.requests.transition(request_id, state, event)
            state = store.requests.get(request_id).state
    listed = {row.id: row.state for row in store.requests.open_requests()}
    assert listed == {"r0": "pending", "r1": "approved", "r2": "applying"}


def test_after_an_acknowledgement_an_outside_change_is_alerted_even_if_an_unfinished_apply_expected_it(
    store: Store,  # noqa: F811
) -> None:
    """An apply that never finished (its process killed) left `two` expected; once a person
    acknowledges an outside change, `two` set outside recbot later is a change to alert on."""
    store.drift.remember(TARGET, _obs("one"))
    store.drift.expect(TARGET, _obs("two"))
    store.drift.create_alert("a1", TARGET, _obs("one"), _obs("three"), CHANGES)
    assert store.drift.end_alert("a1", "acknowledged", baseline=_obs("three"), decided_by="UBOB")
    made = store.drift.create_alert("a2", TARGET, _obs("three"), _obs("two"), CHANGES)
    assert made is not None and made[0].is_open


def test_an_apply_that_ends_leaves_what_a_later_apply_expects(store: Store) -> None:  # noqa: F811
    """Two changes of one target in flight: the first one ending must not make the watch
    call the second one's result a change made outside recbot."""
    store.drift.remember(TARGET, _obs("one"))
    store.drift.expect(TARGET, _obs("two"))  # the first change
    store.drift.expect(TARGET, _obs("three"))  # the second, sent meanwhile
    store.drift.unexpect(TARGET, _obs("two"))  # the first one failed
    assert store.drift.create_alert("a1", TARGET, _obs("one"), _obs("three"), CHANGES) is None
    assert store.drift.open_alerts() == []


def test_a_rebase_that_lost_a_race_does_not_undo_what_recbot_saw_since(store: Store) -> None:  # noqa: F811
    """The watch re-keys the baseline `one` while recbot records `two` (it applied it): the
    re-key must not put `one` back, or the next outside change would not be alerted."""
    store.drift.remember(TARGET, _obs("one"))
    store.drift.record(TARGET, _obs("two"))  # in between the watch's read and its rebase
    store.drift.rebase(TARGET, _obs("one"), _obs("one", keys="k2"))
    made = store.drift.create_alert("a1", TARGET, _obs("two"), _obs("three"), CHANGES)
    assert made is not None and made[0].is_open


def test_what_recbot_applied_to_a_target_the_watch_never_saw_is_its_baseline(store: Store) -> None:  # noqa: F811
    """recbot applies `two` to a target before the watch's first pass: an outside change
    after that is alerted, not taken in as the first baseline."""
    store.drift.record(TARGET, _obs("two"))
    assert store.drift.observed(TARGET) == (_obs("two"), None)
    made = store.drift.create_alert("a1", TARGET, _obs("two"), _obs("three"), CHANGES)
    assert made is not None and made[0].is_open


def test_an_open_alert_that_cannot_be_read_is_replaced_by_one_people_can_act_on(store: Store) -> None:  # noqa: F811
    store.drift.remember(TARGET, _obs("one"))
    store.drift.create_alert("a1", TARGET, _obs("one"), _obs("two"), CHANGES)
    with store.engine.begin() as conn:
        conn.execute(update(drift_alerts).where(drift_alerts.c.id == "a1").values(changes="{damaged"))
    made = store.drift.create_alert("a2", TARGET, _obs("one"), _obs("two"), CHANGES)
    assert made is not None
    assert [a.id for a in store.drift.open_alerts()] == ["a2"]


def test_the_stream_tasks_of_a_region_are_only_that_regions(store: Store) -> None:  # noqa: F811
    """`/recording get` in one region lists the single streams recbot started there, not elsewhere."""
    eu = Target(app_id=TARGET.app_id, entry_point=TARGET.entry_point, region="eu")
    store.switches.add_stream_task(TARGET, "cam-na", "UALICE")
    store.switches.add_stream_task(eu, "cam-eu", "UBOB")
    assert [t.stream for t in store.switches.stream_tasks_of(TARGET)] == ["cam-na"]
    assert [t.stream for t in store.switches.stream_tasks_of(eu)] == ["cam-eu"]


@pytest.mark.parametrize(
    ("state", "events"), [("pending", ["cancel"]), ("approved", ["claim", "fail"]), ("applying", ["fail"])]
)
def test_a_request_open_when_version_4_was_upgraded_has_its_end_announced(
    store: Store,  # noqa: F811
    state: str,
    events: list[str],
) -> None:
    """A request open in any state when a version-4 database is upgraded ends after it: its
    end is one the sweeps announce, so the requester is told even if the first try failed."""
    url = rebuild(store.engine, "v4")
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE change_requests SET state = :s WHERE id = 'open1'"), {"s": state})
    upgraded = open_store(url)
    try:
        for event in events:
            assert upgraded.requests.transition("open1", upgraded.requests.get("open1").state, event)
        assert [r.id for r in upgraded.announcements.unannounced_ends()] == ["open1"]
    finally:
        upgraded.close()


def test_switching_a_format_off_is_applied_and_confirmed(driver, slack, agora) -> None:
    """MP4 on -> off: Agora holds it off, and the person is told it is applied, not that the
    read-back differs (it is compared with the change, not with what was live before)."""
    view = open_form(driver, slack)
    driver.submit("UALICE", view, state(mp4=False, hls=True))
    text = final_view_text(slack)
    assert "MP4 recording: on → off" in text and "Change applied and confirmed" in text
    assert agora.config(APP_ID, "live", "na")["mp4Config"] == {"enabled": False}


def test_a_configuration_set_while_the_switch_is_unknown_says_recording_is_on_now(driver, slack, agora) -> None:
    """A pause Agora never answered leaves the switch unknown; setting a configuration then
    switches recording on, and the person is told so, as after a pause that was answered."""
    agora.inject(*[Fault(504, message="Gateway Timeout", path="/auto")] * 4)
    run(driver, slack, "pause live")
    view = open_form(driver, slack)
    driver.submit("UALICE", view, state(mp4=True, hls=True))
    applied = final_view_text(slack)
    assert "switches custom recording on for every stream" in applied and "recbot knew it as unknown" in applied
