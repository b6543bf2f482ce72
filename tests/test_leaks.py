"""One run of every flow with distinctive secrets; then every captured Slack
request, log record, exception text, audit row and the raw database file is
scanned for them. Logging's redaction filter is not installed here: nothing
may depend on it."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import select

from bot.settings import load_settings
from bot.store.schema import audit_events, change_requests
from handlers.blocks import approval_card as card
from handlers.blocks import edit_form as form
from tests.approval_helpers import click, text_of
from tests.conftest import ACCESS_KEY, APP_ID, CUSTOMER_SECRET, SECRET_KEY, SIGNING_SECRET, fast_agora
from tests.driver import SlackDriver, start_bot
from tests.fakes.agora import Fault
from tests.test_change_flow import final_view_text, open_form, state

SECRETS = {
    "approved": ("LEAKCANARY-ACCESS-AAAA1111", "LEAKCANARY-SECRET-approved-zz"),
    "rejected": ("LEAKCANARY-ACCESS-BBBB2222", "LEAKCANARY-SECRET-rejected-yy"),
    "expired": ("LEAKCANARY-ACCESS-CCCC3333", "LEAKCANARY-SECRET-expired-xx"),
    "refused": ("LEAKCANARY-ACCESS-DDDD4444", "LEAKCANARY-SECRET with space"),
    "typed": ("LEAKCANARY-ACCESS-EEEE5555", "LEAKCANARY-SECRET-typed-ww"),
    "probed": ("LEAKCANARY-ACCESS-FFFF6666", "LEAKCANARY-SECRET-probed-vv"),
    "quoted": ("LEAKCANARY-ACCESS-GGGG7777", "LEAKCANARY-SECRET/quoted+uu"),
}
# How Agora quotes the keys of the refused change back in its words: upper-cased, URL-encoded.
QUOTED_BACK = (SECRETS["quoted"][1].upper(), quote(SECRETS["quoted"][1], safe=""), SECRETS["quoted"][0].lower())


def request(driver: SlackDriver, slack, user: str, keys: tuple[str, str]) -> None:
    view = open_form(driver, slack, user=user)
    values = state(change=True, vendor=1, region=3, bucket="leak-bucket", access=keys[0], secret=keys[1])
    updated = len(slack.of("views.update"))
    driver.submit(user, view, values)
    slack.wait_for("views.update", count=updated + 1)


def test_no_secret_leaks_from_any_flow(settings_overrides, slack, agora, caplog, tmp_path, moto_s3) -> None:
    caplog.set_level(logging.DEBUG)
    settings = load_settings(_env_file=None, **settings_overrides)
    bot = start_bot(settings, fast_agora(settings))
    driver = SlackDriver(bot.url, SIGNING_SECRET, slack.response_url())
    try:
        # get, and its upstream errors
        driver.command("get live na")
        slack.wait_for("response_url")  # answered before the faults: the next gets meet them
        agora.inject(Fault(401, method="GET"), *[Fault(503, method="GET")] * 4)
        driver.command("get live na")
        driver.command("get live na")
        driver.command("get missing na")
        slack.wait_for("response_url", count=4)
        # a direct change
        view = open_form(driver, slack)
        driver.submit("UALICE", view, state(mp4=True, hls=True))
        assert "applied" in final_view_text(slack)
        # a vendor chosen after the keys were typed: the form is updated without them
        view = open_form(driver, slack)
        typed = state(change=True, vendor=1, bucket="b", access=SECRETS["typed"][0], secret=SECRETS["typed"][1])
        updates = len(slack.of("views.update"))
        driver.block_action(
            "UALICE",
            {"action_id": form.ACTION_VENDOR, "block_id": form.BLOCK_VENDOR, "selected_option": {"value": "7"}},
            view={**view, "state": {"values": typed}},
        )
        assert "Huawei" in text_of(slack.wait_for("views.update", count=updates + 1)[-1])
        # a hostile key is refused on the form without being echoed
        view = open_form(driver, slack)
        refused = driver.submit(
            "UALICE",
            view,
            state(
                change=True, vendor=1, region=0, bucket="b", access=SECRETS["refused"][0], secret=SECRETS["refused"][1]
            ),
        )
        assert refused.json()["response_action"] == "errors"
        assert SECRETS["refused"][1] not in refused.text
        # a request approved and applied
        request(driver, slack, "UALICE", SECRETS["approved"])
        card_call = slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "CAPPROVE")[0]
        click(driver, card_call, "UBOB", card.ACTION_APPROVE)
        slack.wait_for("chat.update", where=lambda c: "Applied" in text_of(c))
        # a request rejected
        request(driver, slack, "UALICE", SECRETS["rejected"])
        card_call = slack.wait_for("chat.postMessage", count=2, where=lambda c: c.params.get("channel") == "CAPPROVE")[
            1
        ]
        click(driver, card_call, "UBOB", card.ACTION_REJECT)
        (asked,) = slack.wait_for("views.open", where=lambda c: c.params["view"]["callback_id"] == card.CALLBACK_REJECT)
        modal = {**asked.params["view"], "id": "VREJ"}
        driver.submit("UBOB", modal, {card.BLOCK_REASON: {card.ACTION_REASON: {"value": "no"}}})
        slack.wait_for("chat.update", where=lambda c: "Rejected" in text_of(c))
        # a request Agora refuses, quoting its keys back in its words
        agora.inject(Fault(400, message=f"bad keys {QUOTED_BACK[0]} {QUOTED_BACK[1]} {QUOTED_BACK[2]}", method="PATCH"))
        request(driver, slack, "UALICE", SECRETS["quoted"])
        card_call = slack.wait_for("chat.postMessage", count=3, where=lambda c: c.params.get("channel") == "CAPPROVE")[
            2
        ]
        click(driver, card_call, "UBOB", card.ACTION_APPROVE)
        slack.wait_for("chat.update", where=lambda c: "Failed" in text_of(c) and "bad keys [redacted]" in text_of(c))
        driver.command("history live na")
        driver.command("pending")
        slack.wait_for("response_url", count=6)
    finally:
        bot.stop()
    # a request that expires, on a bot with a one-second TTL
    short = load_settings(_env_file=None, **{**settings_overrides, "RECBOT_REQUEST_TTL_SECONDS": "1"})
    bot = start_bot(short, fast_agora(short))
    driver = SlackDriver(bot.url, SIGNING_SECRET, slack.response_url())
    try:
        request(driver, slack, "UCAROL", SECRETS["expired"])
        slack.wait_for("chat.update", where=lambda c: "Expired" in text_of(c))
    finally:
        bot.stop()
    # the storage probe, on, against a real S3 server that refuses these keys
    probing = load_settings(
        _env_file=None,
        **{**settings_overrides, "RECBOT_STORAGE_PROBE": "require", "RECBOT_STORAGE_ENDPOINT_OVERRIDE": moto_s3.url},
    )
    bot = start_bot(probing, fast_agora(probing))
    driver = SlackDriver(bot.url, SIGNING_SECRET, slack.response_url())
    try:
        request(driver, slack, "UALICE", SECRETS["probed"])
        assert "InvalidAccessKeyId" in text_of(
            slack.wait_for("views.update", where=lambda c: "refused" in text_of(c))[0]
        )
        with bot.services.store.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(select(change_requests)).mappings()]
            rows += [dict(r) for r in conn.execute(select(audit_events)).mappings()]
    finally:
        bot.stop()

    assert [r["state"] for r in rows if "state" in r] == ["applied", "rejected", "failed", "expired"]
    assert agora.config(APP_ID, "live", "na")["storageConfig"]["secretKey"] == SECRETS["approved"][1]
    secrets = [s for pair in SECRETS.values() for s in pair] + [SECRET_KEY, ACCESS_KEY, CUSTOMER_SECRET, *QUOTED_BACK]
    logs = "\n".join(
        record.getMessage() + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        for record in caplog.records
    )
    surfaces = {
        "Slack requests": slack.payload_text(),
        "log records": logs,
        "database rows": json.dumps(rows, default=repr),
    }
    database = Path(settings.DATABASE_URL.removeprefix("sqlite:///")).read_bytes()
    for secret in secrets:
        for name, text in surfaces.items():
            assert secret not in text, f"{secret!r} leaked into {name}"
        assert secret.encode() not in database, f"{secret!r} is in the database file"
    assert "...1111" in slack.payload_text()  # fingerprints are shown; the test would see a leak
