"""The drift watch end to end: a change made outside recbot is announced once,
with Acknowledge and Revert; recbot's own changes and failed reads are not drift."""

from __future__ import annotations

import copy
import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot import drift as bot_drift
from bot.settings import Settings, load_settings
from handlers.blocks import approval_card
from handlers.blocks import drift_card as card
from handlers.blocks import edit_form as form
from tests.approval_helpers import card_shown, click, text_of
from tests.conftest import ACCESS_KEY, APP_ID, LIVE_CONFIG, SECRET_KEY, SIGNING_SECRET, fast_agora
from tests.driver import RunningBot, SlackDriver, start_bot
from tests.fakes.agora import AgoraEmulator, Fault
from tests.fakes.slack import Call, FakeSlack
from tests.test_change_flow import final_view_text, open_form, state

CONSOLE_SECRET = "CONSOLE-TYPED-SECRET-4242"
OUTSIDE_CHANGE: dict[str, Any] = {
    **copy.deepcopy(LIVE_CONFIG),
    "hlsConfig": {"enabled": True},
    "storageConfig": {**LIVE_CONFIG["storageConfig"], "bucket": "console-bucket", "secretKey": CONSOLE_SECRET},
}


def watching(settings: Settings) -> Settings:
    """`settings` with watch passes 50 ms apart, far below the 30 s a deployment may set, so
    that tests need not wait; model_copy does not validate."""
    return settings.model_copy(update={"RECBOT_DRIFT_INTERVAL_SECONDS": 0.05})


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return watching(settings)


def is_alert(call: Call) -> bool:
    return call.params.get("channel") == "CAPPROVE" and call.params.get("text", "").startswith("Changed outside recbot")


def settle(bot: RunningBot, passes: int = 3) -> None:
    """Let `passes` whole watch passes run after now, and what they started finish."""
    assert bot.services.drift.wait_passes(bot.services.drift.passes + passes)
    bot.drain()


def remember(driver: SlackDriver, slack: FakeSlack, bot: RunningBot) -> None:
    """A `/recording get`: the first read of a target makes recbot remember it."""
    answered = len(slack.of("response_url"))
    driver.command("get live na")
    slack.wait_for("response_url", count=answered + 1)
    settle(bot)


def wait_alert(slack: FakeSlack, bot: RunningBot, count: int = 1) -> Call:
    """The `count`th alert card, once the pass that posted it has recorded where it is."""
    posted = slack.wait_for("chat.postMessage", count=count, where=is_alert)[count - 1]
    settle(bot, passes=2)  # passes run one after another: the next one starts after the posting
    return posted


def replies(slack: FakeSlack, after: int) -> list[str]:
    return [text_of(c) for c in slack.of("response_url")[after:]]


def alerts(slack: FakeSlack) -> list[Call]:
    return [c for c in slack.of("chat.postMessage") if is_alert(c)]


def click_alert(driver: SlackDriver, posted: Call, user: str, action_id: str) -> None:
    buttons = next(b for b in posted.params["blocks"] if b.get("block_id") == card.BLOCK_BUTTONS)["elements"]
    action = next(e for e in buttons if e["action_id"] == action_id)
    message = {"ts": posted.params["_ts"], "blocks": posted.params["blocks"]}
    assert driver.block_action(user, action, message=message, channel=posted.params["channel"]).status_code == 200


def test_a_change_outside_recbot_is_announced_once_masked_and_in_history(driver, slack, agora, bot) -> None:
    remember(driver, slack, bot)
    assert alerts(slack) == []
    agora.put(APP_ID, "live", "na", OUTSIDE_CHANGE)
    posted = wait_alert(slack, bot)
    settle(bot, passes=5)
    assert len(alerts(slack)) == 1  # seen on every pass, announced once
    shown = card_shown(slack, posted)
    assert "HLS recording: off → on" in shown and "Bucket: rec-bucket → console-bucket" in shown
    assert "Storage keys: changed" in shown and card.BLOCK_BUTTONS in shown
    assert CONSOLE_SECRET not in slack.payload_text() and SECRET_KEY not in slack.payload_text()
    assert ACCESS_KEY not in slack.payload_text()
    events = bot.services.store.audit.history(bot.services.store.drift.observed_targets()[0])
    assert [e.event for e in events].count("changed_outside") == 1
    answered = len(slack.of("response_url"))
    driver.command("history live na")
    (reply,) = slack.wait_for("response_url", count=answered + 1)[answered:]
    assert "changed outside recbot" in text_of(reply) and "console-bucket" in text_of(reply)
    assert agora.calls("PATCH") == []


def test_an_alert_whose_card_slack_refused_is_posted_by_a_later_pass_once(driver, slack, agora, bot, monkeypatch):
    remember(driver, slack, bot)
    slack.errors["chat.postMessage"] = "internal_error"
    agora.put(APP_ID, "live", "na", OUTSIDE_CHANGE)
    settle(bot, passes=3)
    (alert,) = bot.services.store.drift.open_alerts()
    assert alert.cards == [] and len(alerts(slack)) == 1 and "_ts" not in alerts(slack)[0].params  # refused
    settle(bot, passes=3)  # too young to be taken for one whose posting failed: not tried again yet
    assert len(alerts(slack)) == 1
    monkeypatch.setattr(bot_drift, "UNPOSTED_AFTER", timedelta(0))
    del slack.errors["chat.postMessage"]
    posted = wait_alert(slack, bot, count=2)
    settle(bot, passes=5)
    assert len(alerts(slack)) == 2 and "_ts" in posted.params  # posted once more, and only once
    assert "Bucket: rec-bucket → console-bucket" in card_shown(slack, posted)
    (alert,) = bot.services.store.drift.open_alerts()
    assert [(c.channel, c.ts) for c in alert.cards] == [("CAPPROVE", posted.params["_ts"])]


def test_the_alert_names_the_entry_point_inert(driver, slack, agora, bot) -> None:
    agora.put(APP_ID, "a*b`c", "na", LIVE_CONFIG)
    driver.command("get a*b`c na")  # remembered from now on
    slack.wait_for("response_url")
    settle(bot)
    agora.put(APP_ID, "a*b`c", "na", OUTSIDE_CHANGE)
    headline = wait_alert(slack, bot).params["blocks"][0]["text"]["text"]
    assert f"*Changed outside recbot:* `a*b\u02cbc` (na, app `{APP_ID}`)" in headline


def test_no_key_of_either_side_reaches_slack_logs_or_the_database(driver, slack, agora, bot, caplog) -> None:
    """Remember, drift, acknowledge, drift again, open the revert form: then scan every surface."""
    caplog.set_level(logging.DEBUG)
    remember(driver, slack, bot)
    agora.put(APP_ID, "live", "na", OUTSIDE_CHANGE)
    click_alert(driver, wait_alert(slack, bot), "UBOB", card.ACTION_ACKNOWLEDGE)
    slack.wait_for("chat.update")
    rotated = copy.deepcopy(OUTSIDE_CHANGE)
    rotated["storageConfig"]["accessKey"] = "AKIA-CONSOLE-ROTATED-77"
    agora.put(APP_ID, "live", "na", rotated)
    click_alert(driver, wait_alert(slack, bot, count=2), "UALICE", card.ACTION_REVERT)
    slack.wait_for("views.update")
    driver.command("history live na")
    slack.wait_for("response_url", count=2)
    bot.drain()
    logs = "\n".join(
        r.getMessage() + (logging.Formatter().formatException(r.exc_info) if r.exc_info else "") for r in caplog.records
    )
    database = Path(bot.services.settings.DATABASE_URL.removeprefix("sqlite:///")).read_bytes()
    for secret in (CONSOLE_SECRET, SECRET_KEY, ACCESS_KEY, "AKIA-CONSOLE-ROTATED-77"):
        assert secret not in slack.payload_text(), f"{secret!r} reached Slack"
        assert secret not in logs, f"{secret!r} reached the logs"
        assert secret.encode() not in database, f"{secret!r} is in the database file"
    (target,) = bot.services.store.drift.observed_targets()
    events = [e.event for e in bot.services.store.audit.history(target)]
    assert events.count("changed_outside") == 2 and "drift_acknowledged" in events  # the scans saw every step


def test_the_keys_alone_changed_says_so_and_nothing_else(driver, slack, agora, bot) -> None:
    remember(driver, slack, bot)
    keys_only = copy.deepcopy(LIVE_CONFIG)
    keys_only["storageConfig"]["accessKey"] = "AKIAROTATEDOUTSIDE99"
    agora.put(APP_ID, "live", "na", keys_only)
    posted = wait_alert(slack, bot)
    shown = card_shown(slack, posted)
    assert "Storage keys: changed" in shown and "Bucket" not in shown and "AKIAROTATEDOUTSIDE99" not in shown


def test_no_alert_for_changes_recbot_applied(driver, slack, agora, bot) -> None:
    """Direct changes and approved ones, while the watch reads every 50 ms: never drift."""
    remember(driver, slack, bot)
    for round_no in range(5):
        view = open_form(driver, slack)
        driver.submit("UALICE", view, state(mp4=False))
        assert "applied" in final_view_text(slack), f"round {round_no}"
        view = open_form(driver, slack)
        keys = {"access": f"AKIAROUND{round_no}XXXX", "secret": f"SECRET-ROUND-{round_no}-abcdef"}
        driver.submit("UALICE", view, state(mp4=True, change=True, vendor=7, region=0, bucket="hw-bucket", **keys))
        assert "approval" in final_view_text(slack, count=4)  # the card is posted and recorded
        (posted,) = slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "CAPPROVE")
        click(driver, posted, "UBOB", approval_card.ACTION_APPROVE)
        slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "UALICE" and "Applied" in text_of(c))
        settle(bot)
        assert alerts(slack) == [], f"round {round_no}"
        slack.clear()
    assert len(agora.calls("PATCH")) == 10
    assert agora.config(APP_ID, "live", "na")["storageConfig"]["secretKey"] == "SECRET-ROUND-4-abcdef"
    assert bot.services.store.drift.open_alerts() == []


def test_a_failed_read_is_not_drift(driver, slack, agora, bot) -> None:
    remember(driver, slack, bot)
    (target,) = bot.services.store.drift.observed_targets()
    before = bot.services.store.drift.observed(target)
    faults = [Fault(503, method="GET"), Fault(401, method="GET"), Fault(429, method="GET"), Fault(404, method="GET")]
    agora.inject(*[copy.copy(f) for f in faults for _ in range(3)])
    for _ in range(60):
        if not agora.faults:
            break
        settle(bot, passes=1)
    assert agora.faults == []  # every fault was served to the watch
    assert alerts(slack) == [] and bot.services.store.drift.observed(target) == before
    settle(bot)
    assert alerts(slack) == []


def test_acknowledge_is_for_approvers_records_who_and_ends_the_alert(driver, slack, agora, bot) -> None:
    remember(driver, slack, bot)
    agora.put(APP_ID, "live", "na", OUTSIDE_CHANGE)
    posted = wait_alert(slack, bot)
    click_alert(driver, posted, "UALICE", card.ACTION_ACKNOWLEDGE)
    slack.wait_for("response_url", count=2)
    assert "Only the approvers" in replies(slack, 1)[0] and card.BLOCK_BUTTONS in card_shown(slack, posted)
    click_alert(driver, posted, "UBOB", card.ACTION_ACKNOWLEDGE)
    slack.wait_for("chat.update", where=lambda c: c.params["ts"] == posted.params["_ts"])
    settle(bot, passes=5)
    shown = card_shown(slack, posted)
    assert "Acknowledged" in shown and "<@UBOB>" in shown and card.BLOCK_BUTTONS not in shown
    assert len(alerts(slack)) == 1  # the acknowledged change is the new normal
    click_alert(driver, posted, "UCAROL", card.ACTION_ACKNOWLEDGE)
    slack.wait_for("response_url", count=3)
    assert "already acknowledged by <@UBOB>" in replies(slack, 2)[0]
    (target,) = bot.services.store.drift.observed_targets()
    events = [(e.event, e.actor) for e in bot.services.store.audit.history(target)]
    assert ("drift_acknowledged", "UBOB") in events


def test_revert_fills_the_form_with_the_previous_values_and_goes_through_approval(driver, slack, agora, bot) -> None:
    remember(driver, slack, bot)
    agora.put(APP_ID, "live", "na", OUTSIDE_CHANGE)
    posted = wait_alert(slack, bot)
    click_alert(driver, posted, "UALICE", card.ACTION_REVERT)
    slack.wait_for("views.open")
    (update,) = slack.wait_for("views.update")
    view = slack.view(update.params["view_id"])
    blocks = {b.get("block_id"): b for b in view["blocks"]}
    assert blocks[form.BLOCK_BUCKET]["element"]["initial_value"] == "rec-bucket"  # before the outside change
    assert [o["value"] for o in blocks[form.BLOCK_FORMATS]["element"]["initial_options"]] == [form.MP4]
    assert blocks[form.BLOCK_CHANGE_STORAGE]["element"]["initial_options"][0]["value"] == form.CHANGE
    assert blocks[form.BLOCK_VENDOR]["element"]["initial_option"]["value"] == "1"
    for key_block in (form.BLOCK_ACCESS_KEY, form.BLOCK_SECRET_KEY):
        assert "initial_value" not in blocks[key_block]["element"]  # keys are typed again
    assert "console-bucket" in json.dumps(blocks[form.BLOCK_CURRENT])  # the form starts from what is live
    driver.submit(
        "UALICE",
        view,
        state(
            mp4=True,
            hls=False,
            change=True,
            vendor=1,
            region=0,
            bucket="rec-bucket",
            access=ACCESS_KEY,
            secret=SECRET_KEY,
        ),
    )
    assert "approval" in final_view_text(slack, count=2)  # the card is posted and recorded
    (request_card,) = slack.wait_for(
        "chat.postMessage", where=lambda c: c.params["channel"] == "CAPPROVE" and not is_alert(c)
    )
    assert agora.calls("PATCH") == []  # not before a second person approves
    click(driver, request_card, "UBOB", approval_card.ACTION_APPROVE)
    slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "UALICE" and "Applied" in text_of(c))
    assert agora.config(APP_ID, "live", "na") == LIVE_CONFIG
    settle(bot)
    shown = card_shown(slack, posted)
    assert "Resolved" in shown and card.BLOCK_BUTTONS not in shown
    assert len(alerts(slack)) == 1 and len(agora.calls("PATCH")) == 1


def test_a_second_outside_change_supersedes_the_open_alert(driver, slack, agora, bot) -> None:
    remember(driver, slack, bot)
    agora.put(APP_ID, "live", "na", OUTSIDE_CHANGE)
    first = wait_alert(slack, bot)
    again = copy.deepcopy(OUTSIDE_CHANGE)
    again["mp4Config"] = {"enabled": False}
    agora.put(APP_ID, "live", "na", again)
    second = wait_alert(slack, bot, count=2)
    settle(bot)
    assert "Superseded" in card_shown(slack, first) and card.BLOCK_BUTTONS not in card_shown(slack, first)
    assert "MP4 recording: on → off" in card_shown(slack, second)  # still against what recbot last saw
    assert len(bot.services.store.drift.open_alerts()) == 1


def test_a_forged_alert_button_does_nothing(driver, slack, agora, bot) -> None:
    remember(driver, slack, bot)
    agora.put(APP_ID, "live", "na", OUTSIDE_CHANGE)
    posted = wait_alert(slack, bot)
    forged = copy.deepcopy(posted)
    buttons = next(b for b in forged.params["blocks"] if b.get("block_id") == card.BLOCK_BUTTONS)["elements"]
    for button in buttons:
        button["value"] = button["value"].split(".")[0] + ".forged"
    click_alert(driver, forged, "UBOB", card.ACTION_ACKNOWLEDGE)
    slack.wait_for("response_url", count=2)
    assert "not a genuine" in replies(slack, 1)[0]
    assert bot.services.store.drift.open_alerts() != []


def test_drift_all_watches_every_listed_entry_point_in_every_region(settings_overrides, slack, agora) -> None:
    settings = watching(load_settings(_env_file=None, **{**settings_overrides, "RECBOT_DRIFT_ALL": "true"}))
    agora.put(APP_ID, "backup", "eu", LIVE_CONFIG)  # never read through recbot
    bot = start_bot(settings, fast_agora(settings))
    try:
        settle(bot)
        remembered = {(t.entry_point, t.region) for t in bot.services.store.drift.observed_targets()}
        assert remembered == {("live", "na"), ("backup", "eu")}
        agora.put(APP_ID, "backup", "eu", OUTSIDE_CHANGE)
        posted = wait_alert(slack, bot)
        assert "backup (eu" in card_shown(slack, posted)
    finally:
        bot.stop()


def test_the_watch_is_off_at_zero(settings_overrides, slack, agora: AgoraEmulator) -> None:
    settings = load_settings(_env_file=None, **{**settings_overrides, "RECBOT_DRIFT_INTERVAL_SECONDS": "0"})
    bot = start_bot(settings, fast_agora(settings))
    try:
        running = [t.name for t in bot.sweeper.tasks]
        assert "expiry-sweep" in running and "drift-watch" not in running  # the rest of the background goes on
    finally:
        bot.stop()


def test_a_new_seal_key_is_not_a_key_change_but_later_changes_still_are(settings_overrides, slack, agora) -> None:
    """The keys digest is keyed by the seal key: after it is replaced, recbot re-learns the keys quietly."""
    from cryptography.fernet import Fernet

    def started(seal_key: bytes) -> tuple[RunningBot, SlackDriver]:
        settings = watching(
            load_settings(_env_file=None, **{**settings_overrides, "RECBOT_SEAL_KEY": seal_key.decode()})
        )
        bot = start_bot(settings, fast_agora(settings))
        return bot, SlackDriver(bot.url, SIGNING_SECRET, slack.response_url())

    bot, driver = started(Fernet.generate_key())
    try:
        remember(driver, slack, bot)
    finally:
        bot.stop()
    bot, driver = started(Fernet.generate_key())
    try:
        settle(bot, passes=5)
        assert alerts(slack) == []
        rotated = copy.deepcopy(LIVE_CONFIG)
        rotated["storageConfig"]["secretKey"] = CONSOLE_SECRET
        agora.put(APP_ID, "live", "na", rotated)
        assert "Storage keys: changed" in card_shown(slack, wait_alert(slack, bot))
    finally:
        bot.stop()


def submitted(driver: SlackDriver, slack: FakeSlack, values: dict[str, Any]) -> str:
    """Open the form of live (na), submit `values`, and return the form's final view as text."""
    view = open_form(driver, slack)
    updates = len(slack.of("views.update"))
    driver.submit("UALICE", view, values)
    return final_view_text(slack, count=updates + 1)


def started_with_key(overrides: dict[str, Any], slack: FakeSlack, seal_key: bytes, **more: str) -> RunningBot:
    settings = watching(load_settings(_env_file=None, **{**overrides, "RECBOT_SEAL_KEY": seal_key.decode(), **more}))
    return start_bot(settings, fast_agora(settings))


def bucket_changed(bucket: str) -> dict[str, Any]:
    changed = copy.deepcopy(LIVE_CONFIG)
    changed["storageConfig"]["bucket"] = bucket
    return changed


def test_a_failed_apply_then_a_new_seal_key_still_announces_an_outside_change_once(
    settings_overrides, slack, agora
) -> None:
    """A failed apply, the seal key replaced, then a change made in Agora Console: one alert."""
    from cryptography.fernet import Fernet

    bot = started_with_key(settings_overrides, slack, Fernet.generate_key())
    try:
        driver = SlackDriver(bot.url, SIGNING_SECRET, slack.response_url())
        remember(driver, slack, bot)
        agora.inject(Fault(400, method="PATCH", message="mp4Config is locked"))
        assert "locked" in submitted(driver, slack, state(mp4=False))
        settle(bot)
    finally:
        bot.stop()
    bot = started_with_key(settings_overrides, slack, Fernet.generate_key())
    try:
        settle(bot, passes=3)
        assert alerts(slack) == []  # the new key alone is no change
        agora.put(APP_ID, "live", "na", bucket_changed("console-bucket"))
        posted = wait_alert(slack, bot)
        settle(bot, passes=3)
        assert len(alerts(slack)) == 1 and "Bucket: rec-bucket → console-bucket" in card_shown(slack, posted)
        assert "Storage keys" not in [c.label for a in bot.services.store.drift.open_alerts() for c in a.changes]
    finally:
        bot.stop()


def test_an_expectation_left_set_does_not_keep_a_new_seal_key_from_being_learnt(settings_overrides, slack, agora):
    """Whatever is expected (an apply in progress, or an expectation an older recbot left behind),
    the baseline re-keyed under a new seal key is stored, so later outside changes are announced."""
    from cryptography.fernet import Fernet

    from bot.models import RecordingConfig

    old_key = Fernet.generate_key()
    bot = started_with_key(settings_overrides, slack, old_key)
    try:
        remember(SlackDriver(bot.url, SIGNING_SECRET, slack.response_url()), slack, bot)
        (target,) = bot.services.store.drift.observed_targets()
        elsewhere = RecordingConfig.model_validate(bucket_changed("applying-elsewhere"))
        bot.services.drift.expect(target, elsewhere)
    finally:
        bot.stop()
    bot = started_with_key(settings_overrides, slack, Fernet.generate_key())
    try:
        settle(bot, passes=3)
        baseline, expected = bot.services.store.drift.observed(target)
        assert baseline == bot.services.drift.observe(RecordingConfig.model_validate(LIVE_CONFIG))  # the new key's
        assert expected is not None and expected.bucket == "applying-elsewhere"  # still expected
        agora.put(APP_ID, "live", "na", bucket_changed("console-bucket"))
        posted = wait_alert(slack, bot)
        settle(bot, passes=3)
        assert len(alerts(slack)) == 1 and "Bucket: rec-bucket → console-bucket" in card_shown(slack, posted)
    finally:
        bot.stop()


class TestEveryWayOutOfAnApply:
    """However an apply ends, what it expected is no longer expected afterwards (the watch is off
    here, so nothing but the apply itself can clear it)."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        """No periodic watch: passes run only when the test runs one."""
        return settings.model_copy(update={"RECBOT_DRIFT_INTERVAL_SECONDS": 0.0})

    @pytest.mark.parametrize("how", ["refused", "unanswered and unreadable", "not in effect", "exception"])
    def test_it_leaves_nothing_expected(self, driver, slack, agora, bot, monkeypatch, how) -> None:
        driver.command("get live na")  # remembered
        slack.wait_for("response_url")
        (target,) = bot.services.store.drift.observed_targets()
        before = bot.services.store.drift.observed(target)
        patched: list[bool] = []

        def on_patch(_: object) -> None:
            if not patched and how == "unanswered and unreadable":
                agora.inject(*[Fault(503, method="GET") for _ in range(4)])  # the read-back's every attempt
            if how == "not in effect":
                agora.put(APP_ID, "live", "na", LIVE_CONFIG)  # undone at once, before the read-back
            patched.append(True)

        agora.after["PATCH"] = on_patch
        if how == "refused":
            agora.inject(Fault(400, method="PATCH", message="mp4Config is locked"))
        if how == "unanswered and unreadable":
            agora.inject(*[Fault(503, method="PATCH") for _ in range(4)])
        if how == "exception":
            reads = bot.services.agora.get_config

            def read_back_raises(target: Any, **kwargs: Any) -> Any:
                if patched:
                    raise RuntimeError("a bug after the PATCH")
                return reads(target, **kwargs)

            monkeypatch.setattr(bot.services.agora, "get_config", read_back_raises)
        if how == "exception":
            driver.submit("UALICE", open_form(driver, slack), state(mp4=False))  # the form says something went wrong
        else:
            assert "applied and confirmed" not in submitted(driver, slack, state(mp4=False))
        bot.drain()
        assert patched, "the apply reached the PATCH"
        assert bot.services.store.drift.observed(target) == (before[0], None)


class TestRecbotsOwnChangesAreNeverDrift:
    """Watch passes run here only when the test runs one: from the Agora emulator while it
    serves recbot's PATCH (the change is live, its read-back not recorded yet), and after
    the apply; direct changes and approved ones. None of them is drift."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        """No periodic watch: passes run only when the test runs one."""
        return settings.model_copy(update={"RECBOT_DRIFT_INTERVAL_SECONDS": 0.0})

    ROUNDS = [(path, during) for path in ("direct", "approved") for during in (True, False)] * 2

    def test_no_pass_during_or_after_an_apply_sees_drift(self, driver, slack, agora, bot) -> None:
        from handlers.notify import Notifier
        from recbot.app import watch_pass

        driver.command("get live na")  # remembered
        slack.wait_for("response_url")
        notifier = Notifier(bot.app.client, bot.services)
        passes: list[int] = []
        now: dict[str, bool] = {}

        def pass_while_the_patch_is_served(_: object) -> None:
            if now["during"]:
                reads = len(agora.calls("GET"))
                watch_pass(bot.services, notifier)
                passes.append(len(agora.calls("GET")) - reads)

        agora.after["PATCH"] = pass_while_the_patch_is_served
        for round_no, (path, during) in enumerate(self.ROUNDS):
            where = f"round {round_no}: {path}, pass during the PATCH: {during}"
            now["during"] = during
            keys = {"access": f"AKIAROUND{round_no}XXXX", "secret": f"SECRET-ROUND-{round_no}-abcdef"}
            if path == "direct":
                assert "confirmed" in submitted(driver, slack, state(mp4=round_no % 4 == 1)), where
            else:
                values = state(change=True, vendor=7, region=0, bucket=f"hw-{round_no}", **keys)
                assert "approval" in submitted(driver, slack, values), where
                (posted,) = slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "CAPPROVE")
                click(driver, posted, "UBOB", approval_card.ACTION_APPROVE)
                slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "UALICE")
            bot.drain()
            watch_pass(bot.services, notifier)
            bot.drain()
            assert alerts(slack) == [] and bot.services.store.drift.open_alerts() == [], where
            slack.clear()
        assert passes == [1] * (len(self.ROUNDS) // 2)  # each of those passes read the target mid-apply
        assert len(agora.calls("PATCH")) == len(self.ROUNDS)
