"""The App Home: per role, its buttons, its refreshes, and the Events API gate it arrives through."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest
import requests
from hypothesis import example, given
from hypothesis import strategies as st

from bot.settings import Settings
from bot.store.schema import drift_alerts
from handlers.blocks import approval_card, messages
from handlers.blocks import home as home_blocks
from handlers.notify import Notifier
from recbot.app import watch_pass
from tests.approval_helpers import card_shown, click, request_storage_change, text_of
from tests.conftest import APP_ID, LIVE_CONFIG, SIGNING_SECRET
from tests.driver import SlackDriver, slack_signature
from tests.fakes.slack import FakeSlack
from tests.test_drift import alerts, remember, wait_alert, watching

# An observation as stored (bot/observation.py), for damaging a stored alert with one field more.
OBSERVED = {"mp4": True, "hls": True, "vendor": 1, "storage_region": 0, "bucket": "rec-bucket", "keys_digest": ""}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return watching(settings)


def open_home(driver: SlackDriver, slack: FakeSlack, user: str) -> dict[str, Any]:
    """Open the Home tab as `user`; the view Slack then shows them."""
    published = len([c for c in slack.of("views.publish") if c.params["user_id"] == user])
    assert driver.home_opened(user).status_code == 200
    slack.wait_for("views.publish", count=published + 1, where=lambda c: c.params["user_id"] == user)
    return slack.home(user)


def shown(view: dict[str, Any] | None) -> str:
    return json.dumps(view, ensure_ascii=False)


def home_button(view: dict[str, Any], request_id: str, action_id: str) -> dict[str, Any]:
    block = next(b for b in view["blocks"] if b.get("block_id") == f"{home_blocks.WAITING_PREFIX}{request_id}_buttons")
    return next(e for e in block["elements"] if e["action_id"] == action_id)


def click_home(driver: SlackDriver, slack: FakeSlack, user: str, action: dict[str, Any]) -> None:
    view = {**slack.home(user), "id": "VHOME", "state": {"values": {}}}
    assert driver.block_action(user, action, view=view).status_code == 200


def published_to(slack: FakeSlack, user: str) -> int:
    return len([c for c in slack.of("views.publish") if c.params["user_id"] == user])


def test_each_role_sees_its_own_home(driver, slack, agora, bot) -> None:
    remember(driver, slack, bot)
    outside = copy.deepcopy(LIVE_CONFIG)
    outside["hlsConfig"] = {"enabled": True}
    agora.put(APP_ID, "live", "na", outside)
    wait_alert(slack, bot)
    agora.put(APP_ID, "ep2", "na", LIVE_CONFIG)
    posted = request_storage_change(driver, slack, entry_point="ep2")
    (row,) = bot.services.store.requests.open_requests()

    approver = open_home(driver, slack, "UBOB")
    assert "Waiting for your approval (1)" in shown(approver)
    assert home_button(approver, row.id, home_blocks.ACTION_APPROVE)["value"] == approval_card.button_value(
        row, bot.services.sealer
    )
    assert "You have no open requests" in shown(approver)

    requester = open_home(driver, slack, "UALICE")
    assert "Waiting for your approval" not in shown(requester) and home_blocks.ACTION_APPROVE not in shown(requester)
    own = next(b for b in requester["blocks"] if b.get("block_id") == f"{home_blocks.OWN_PREFIX}{row.id}")
    assert row.id in shown(own) and "ep2" in shown(own) and own["accessory"]["action_id"] == home_blocks.ACTION_CANCEL

    for view in (approver, requester, open_home(driver, slack, "UDAVE")):
        alerts = next(b for b in view["blocks"] if b.get("block_id") == home_blocks.BLOCK_ALERTS)
        assert "`live` (na" in shown(alerts) and "HLS recording: off → on" in shown(alerts)
        latest = next(b for b in view["blocks"] if b.get("block_id") == home_blocks.BLOCK_LATEST)
        assert "requested" in shown(latest) and "changed outside recbot" in shown(latest)
    assert "NEW-SECRET" not in slack.payload_text() and posted is not None


def test_approve_from_home_applies_once_and_refreshes_the_homes_concerned(driver, slack, agora, bot) -> None:
    posted = request_storage_change(driver, slack)
    (row,) = bot.services.store.requests.open_requests()
    open_home(driver, slack, "UALICE")
    bob = open_home(driver, slack, "UBOB")
    approve = home_button(bob, row.id, home_blocks.ACTION_APPROVE)
    alice_before = published_to(slack, "UALICE")
    click_home(driver, slack, "UBOB", approve)
    slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "UALICE" and "Applied" in text_of(c))
    bot.drain()
    assert len(agora.calls("PATCH")) == 1
    assert "Applied" in card_shown(slack, posted)
    bob_now = shown(slack.home("UBOB"))
    assert "You approved request" in bob_now and f"{home_blocks.WAITING_PREFIX}{row.id}" not in bob_now
    assert published_to(slack, "UALICE") > alice_before  # her request changed: her home was drawn again
    assert "You have no open requests" in shown(slack.home("UALICE")) and "applied" in shown(slack.home("UALICE"))
    click_home(driver, slack, "UBOB", approve)  # the same button again, from the stale home
    bot.drain()
    assert "already applied" in shown(slack.home("UBOB")) and len(agora.calls("PATCH")) == 1


def republished(slack: FakeSlack, since: int) -> set[str]:
    return {c.params["user_id"] for c in slack.of("views.publish")[since:]}


def test_a_request_refreshes_exactly_the_open_homes_it_concerns(driver, slack, agora, bot) -> None:
    """UCAROL (an approver), UDAVE (neither approver nor requester) and UALICE (the requester)
    have opened their homes; UBOB (an approver) never has. A move redraws the homes of the
    approvers and the requester who opened one: not UDAVE's, and no home for UBOB."""
    for user in ("UCAROL", "UDAVE", "UALICE"):
        open_home(driver, slack, user)
    assert "Nothing waits for you" in shown(slack.home("UCAROL"))
    before = len(slack.of("views.publish"))
    posted = request_storage_change(driver, slack)
    bot.drain()
    assert republished(slack, before) == {"UCAROL", "UALICE"}
    assert "Waiting for your approval (1)" in shown(slack.home("UCAROL"))
    assert slack.home("UBOB") is None  # an approver who never opened the home gets none

    before = len(slack.of("views.publish"))
    click(driver, posted, "UBOB", approval_card.ACTION_APPROVE)
    slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "UALICE" and "Applied" in text_of(c))
    bot.drain()
    assert republished(slack, before) == {"UCAROL", "UALICE"}
    assert "Nothing waits for you" in shown(slack.home("UCAROL")) and slack.home("UBOB") is None


def test_home_buttons_refuse_the_requester_and_forgeries(driver, slack, agora, bot) -> None:
    request_storage_change(driver, slack, user="UBOB")  # an approver's own request
    (row,) = bot.services.store.requests.open_requests()
    bob = open_home(driver, slack, "UBOB")
    assert "Nothing waits for you" in shown(bob)  # not his own
    own_button = {
        "action_id": home_blocks.ACTION_APPROVE,
        "type": "button",
        "value": approval_card.button_value(row, bot.services.sealer),
    }
    click_home(driver, slack, "UBOB", own_button)
    bot.drain()
    assert "cannot approve your own request" in shown(slack.home("UBOB"))
    click_home(driver, slack, "UBOB", {**own_button, "action_id": home_blocks.ACTION_REJECT})
    bot.drain()
    assert "To withdraw your own request, use Cancel" in shown(slack.home("UBOB"))
    open_home(driver, slack, "UMALLORY")
    click_home(driver, slack, "UMALLORY", {**own_button, "action_id": home_blocks.ACTION_REJECT})
    bot.drain()
    assert "Only the approvers named in RECBOT_APPROVERS can reject changes" in shown(slack.home("UMALLORY"))
    assert slack.of("views.open")[1:] == []  # no reason asked of someone who may not reject (the form's alone)
    # A genuine Approve button in the hands of someone who is not (or no longer) an approver.
    click_home(driver, slack, "UMALLORY", own_button)
    bot.drain()
    assert "Only the approvers" in shown(slack.home("UMALLORY"))
    click_home(driver, slack, "UBOB", {**own_button, "value": f"{row.id}.forged"})
    bot.drain()
    assert "not a genuine recbot button" in shown(slack.home("UBOB"))
    assert agora.calls("PATCH") == [] and bot.services.store.requests.get(row.id).state == "pending"


def test_a_home_slack_will_not_publish_tells_the_clicker_directly(driver, slack, agora, bot) -> None:
    request_storage_change(driver, slack, user="UBOB")
    (row,) = bot.services.store.requests.open_requests()
    open_home(driver, slack, "UBOB")
    open_home(driver, slack, "UCAROL")  # an approver whose home is drawn again, with no notice for her
    slack.errors["views.publish"] = "internal_error"
    own_button = {
        "action_id": home_blocks.ACTION_APPROVE,
        "type": "button",
        "value": approval_card.button_value(row, bot.services.sealer),
    }
    click_home(driver, slack, "UBOB", own_button)
    (told,) = slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "UBOB")
    assert told.params["text"].startswith(":warning: ") and "cannot approve your own request" in told.params["text"]
    bot.drain()
    assert bot.services.store.requests.get(row.id).state == "pending"
    assert [c for c in slack.of("chat.postMessage") if c.params["channel"] == "UCAROL"] == []  # nothing to tell


def test_reject_from_home_asks_for_a_reason_then_rejects(driver, slack, agora, bot) -> None:
    posted = request_storage_change(driver, slack)
    (row,) = bot.services.store.requests.open_requests()
    bob = open_home(driver, slack, "UBOB")
    opened = len(slack.of("views.open"))
    click_home(driver, slack, "UBOB", home_button(bob, row.id, home_blocks.ACTION_REJECT))
    modal = slack.wait_for("views.open", count=opened + 1)[opened]
    assert modal.params["view"]["callback_id"] == approval_card.CALLBACK_REJECT
    reason = {approval_card.BLOCK_REASON: {approval_card.ACTION_REASON: {"value": "wrong bucket"}}}
    assert driver.submit("UBOB", {**modal.params["view"], "id": modal.params["_view_id"]}, reason).status_code == 200
    slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "UALICE" and "Rejected" in text_of(c))
    bot.drain()
    assert "Rejected" in card_shown(slack, posted) and "Nothing waits for you" in shown(slack.home("UBOB"))
    assert agora.calls("PATCH") == []


def test_the_messages_tab_draws_nothing(driver, slack, bot) -> None:
    assert driver.home_opened("UBOB", tab="messages").status_code == 200
    bot.drain()
    assert slack.of("views.publish") == []


def test_events_are_refused_unsigned_or_malformed_and_the_url_check_is_answered(driver, slack, agora, bot) -> None:
    def signed(body: bytes) -> requests.Response:
        return driver.post(body, content_type="application/json")

    home = {"type": "app_home_opened", "user": "UBOB", "tab": "home"}
    envelope = {"type": "event_callback", "team_id": "T1", "api_app_id": "A1", "event": home}
    body = json.dumps(envelope).encode()
    stale = int(time.time()) - 600
    refused = {
        "unsigned": driver.post(body, signature="", content_type="application/json"),
        "forged": driver.post(body, signature="v0=" + "0" * 64, content_type="application/json"),
        "stale": driver.post(
            body,
            timestamp=stale,
            signature=slack_signature(SIGNING_SECRET, str(stale), body),
            content_type="application/json",
        ),
        "not JSON": signed(b"{not json"),
        "not an object": signed(b"[1, 2]"),
        "no user": signed(json.dumps({**envelope, "event": {"type": "app_home_opened"}}).encode()),
        "other event": signed(json.dumps({**envelope, "event": {"type": "message", "user": "UBOB"}}).encode()),
        "no challenge": signed(json.dumps({"type": "url_verification"}).encode()),
    }
    assert {name: r.status_code for name, r in refused.items()} == {
        "unsigned": 401,
        "forged": 401,
        "stale": 401,
        "not JSON": 400,
        "not an object": 400,
        "no user": 400,
        "other event": 400,
        "no challenge": 400,
    }
    check = signed(json.dumps({"type": "url_verification", "token": "legacy", "challenge": "c-123"}).encode())
    assert check.status_code == 200 and "c-123" in check.text
    bot.drain()
    assert slack.of("views.publish") == [] and agora.calls() == []


class TestADamagedAlertRow:
    """One unreadable alert row is skipped (and logged) wherever alerts are read: the homes
    still publish, with the other alerts, and the next watch pass replaces it with a readable
    alert. Watch passes run here only when the test runs one."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        """No periodic watch: passes run only when the test runs one."""
        return settings.model_copy(update={"RECBOT_DRIFT_INTERVAL_SECONDS": 0.0})

    @pytest.mark.parametrize(
        "damage",
        [
            {"after": json.dumps({**OBSERVED, "colour": "red"})},  # a field this recbot does not know
            {"before": "{not json"},
            {"changes": json.dumps([["HLS recording", "off"]])},  # a change missing its after
            {"cards": json.dumps([["CAPPROVE"]])},
        ],
        ids=["unknown field", "before not JSON", "changes short", "cards short"],
    )
    def test_homes_still_publish_and_the_watch_replaces_it(self, driver, slack, agora, bot, damage) -> None:
        agora.put(APP_ID, "ep2", "na", LIVE_CONFIG)
        for entry_point in ("live", "ep2"):  # remembered
            driver.command(f"get {entry_point} na")
        slack.wait_for("response_url", count=2)
        outside = copy.deepcopy(LIVE_CONFIG)
        outside["hlsConfig"] = {"enabled": True}
        agora.put(APP_ID, "live", "na", outside)
        agora.put(APP_ID, "ep2", "na", outside)
        notifier = Notifier(bot.app.client, bot.services)
        watch_pass(bot.services, notifier)
        assert len(alerts(slack)) == 2
        store = bot.services.store
        (damaged,) = [a.id for a in store.drift.open_alerts() if a.target.entry_point == "live"]
        with store.engine.begin() as conn:
            conn.execute(drift_alerts.update().where(drift_alerts.c.id == damaged).values(**damage))

        for user in ("UBOB", "UDAVE"):
            assert "`ep2` (na" in home_alerts(open_home(driver, slack, user))
            assert "`live` (na" not in home_alerts(slack.home(user)), user
        assert [a.target.entry_point for a in store.drift.open_alerts()] == ["ep2"]

        watch_pass(bot.services, notifier)
        (posted,) = alerts(slack)[2:]
        assert "live (na" in card_shown(slack, posted) and "HLS recording: off → on" in card_shown(slack, posted)
        assert sorted(a.target.entry_point for a in store.drift.open_alerts()) == ["ep2", "live"]
        watch_pass(bot.services, notifier)
        assert len(alerts(slack)) == 3  # announced once more, not on every pass
        assert "`live` (na" in home_alerts(open_home(driver, slack, "UBOB"))


def home_alerts(view: dict[str, Any] | None) -> str:
    return shown(next(b for b in (view or {})["blocks"] if b.get("block_id") == home_blocks.BLOCK_ALERTS))


@pytest.mark.parametrize("switch_status", ["set", "unanswered"])  # an unknown switch takes two blocks
def test_the_fullest_home_stays_within_slacks_limits(switch_status: str) -> None:
    """Every part of the home filled past its limit (an approver with many waiting requests,
    many open requests of their own, paused or unknown entry points and single streams) and a notice:
    at most 100 blocks, each valid, and each own pending request shown has its Cancel button."""
    from datetime import UTC, datetime

    from cryptography.fernet import Fernet

    from bot.models import FieldChange, Target
    from bot.seal import Sealer
    from bot.store.values import RequestRow, StreamTaskRow, SwitchRow
    from tests.fakes.blockkit import view_problems

    now = datetime.now(UTC)
    target = Target(app_id=APP_ID, entry_point="live", region="na")

    def request(number: int, requester: str) -> RequestRow:
        return RequestRow(
            f"{number:016x}", target, "pending", requester, now, now, now, "", None,
            [FieldChange("Bucket", "a", "b")], [], [], None, None, None,
        )  # fmt: skip

    content = home_blocks.HomeContent(
        waiting=[request(i, "UCAROL") for i in range(home_blocks.MAX_WAITING + 5)],
        own=[request(100 + i, "UBOB") for i in range(home_blocks.MAX_OWN + 5)],
        alerts=[],
        latest=[],
        required=2,
        paused=[SwitchRow(APP_ID, f"ep{i}", False, "switch", switch_status, "UBOB", now) for i in range(10)],
        streams=[StreamTaskRow(target, f"cam{i}", "UBOB", now) for i in range(10)],
    )
    view = home_blocks.home_view(content, Sealer(Fernet.generate_key()), "a notice")
    assert len(view["blocks"]) <= 100 and view_problems(view) == []
    cancels = [b for b in view["blocks"] if b.get("accessory", {}).get("action_id") == home_blocks.ACTION_CANCEL]
    assert len(cancels) == home_blocks.MAX_OWN


# Lines of any length up to a long name's, drawn by length (hypothesis seldom draws long text),
# long ones as often as not, so that a listing often outgrows the section.
_length = st.one_of(st.integers(1, 400), st.integers(300, 400))  # no line is empty
_lines = st.lists(st.builds(lambda c, n: c * n, st.sampled_from("ab`*<@"), _length), max_size=40)


@given(lines=_lines)
@example(lines=["`" + "x" * 380 + "`"] * 20)  # 20 names of 382 characters: 7 fit, with the count
@example(lines=["x"] * 16)  # one line more than MAX_LINES
@example(lines=["x"] * 20)
def test_a_listing_shows_whole_lines_within_slacks_limit_and_counts_the_rest(lines: list[str]) -> None:
    text = home_blocks.listing("b", lines, "nothing")["text"]["text"]
    assert len(text) <= messages.MAX_SECTION == 3000  # Slack's limit on a section's text
    if not lines:
        assert text == "nothing"
        return
    shown = text.split("\n")
    whole = len(shown) - 1 if shown[-1].startswith("…and ") else len(shown)
    assert shown[:whole] == lines[:whole]  # the first lines, each whole
    assert whole <= home_blocks.MAX_LINES
    assert (shown[-1] == f"…and {len(lines) - whole} more") if whole < len(lines) else whole == len(lines)
    if whole < min(len(lines), home_blocks.MAX_LINES):  # as many as fit: the next one would not
        rest = len(lines) - whole - 1
        assert len("\n".join(lines[: whole + 1])) + (len(f"\n…and {rest} more") if rest else 0) > 3000


@given(lines=_lines, most=st.integers(1, 20), limit=st.integers(200, 3000))
@example(lines=["a" * 100] * 3, most=3, limit=301)  # the third line would need 302: one character too many
def test_fitting_keeps_whole_lines_in_order_within_the_limit_and_counts_the_rest(lines, most, limit) -> None:
    text = messages.fitting(lines, most, lambda n: f"…and {n} more in the CSV.", limit=limit)
    assert len(text) <= limit or (len(lines) > 0 and text == f"…and {len(lines)} more in the CSV.")
    shown = text.split("\n") if text else []
    whole = len(shown) - 1 if shown and shown[-1].startswith("…and ") else len(shown)
    assert shown[:whole] == lines[:whole] and whole <= most
    assert (shown[-1] == f"…and {len(lines) - whole} more in the CSV.") if whole < len(lines) else whole == len(lines)
