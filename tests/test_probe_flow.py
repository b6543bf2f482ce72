"""The storage probe in the change flow: on submit (a refusal goes back on the
form and nothing is stored), on the approval card, and once more just before
the PATCH. Against moto's S3 server and Azurite, on 127.0.0.1."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.store import audit_events, change_requests
from handlers.blocks import approval_card as card
from handlers.blocks import edit_form as form
from tests.approval_helpers import card_shown, click, text_of
from tests.conftest import CUSTOMER_SECRET
from tests.fakes.http import SilentServer
from tests.storage_servers import AZURITE_ACCOUNT, AZURITE_KEY
from tests.test_change_flow import open_form, state

BUCKET = "flow-bucket"


@pytest.fixture(scope="module")
def s3(moto_s3):
    moto_s3.bucket(BUCKET)
    return moto_s3


@pytest.fixture(scope="module")
def keys(s3):
    return s3.user("flow-writer", "s3:PutObject", "s3:GetObject", "s3:DeleteObject")


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any], s3) -> dict[str, Any]:
    return {**settings_overrides, "RECBOT_STORAGE_PROBE": "require", "RECBOT_STORAGE_ENDPOINT_OVERRIDE": s3.url}


def submit_storage(driver, slack, access: str, secret: str, vendor: int = 1, bucket: str = BUCKET) -> dict[str, Any]:
    """Submit a storage change; the ack's answer (the form's immediate next state)."""
    view = open_form(driver, slack)
    values = state(change=True, vendor=vendor, region=0, bucket=bucket, access=access, secret=secret)
    answer = driver.submit("UALICE", view, values)
    assert answer.status_code == 200
    return answer.json()


def final_view(slack, count: int = 2) -> dict[str, Any]:
    return slack.wait_for("views.update", count=count)[count - 1].params["view"]


def posted_card(slack) -> Any:
    """The approval card, once the submit is done (the card is then attached to its request)."""
    final_view(slack)
    (posted,) = slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "CAPPROVE")
    return posted


def rows(bot) -> tuple[int, int]:
    with bot.services.store.engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(change_requests)).scalar_one(),
            conn.execute(select(func.count()).select_from(audit_events)).scalar_one(),
        )


def test_good_keys_are_checked_and_the_card_says_so(driver, slack, agora, bot, keys, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    acked = submit_storage(driver, slack, keys.access, keys.secret)
    assert acked["response_action"] == "update" and "test object is written" in json.dumps(acked["view"])
    outcome = json.dumps(final_view(slack))
    assert "approval" in outcome and "Storage check: write, read, delete: ok at" in outcome
    posted = posted_card(slack)
    probe_line = next(b for b in posted.params["blocks"] if b.get("block_id") == card.BLOCK_PROBE)
    assert "white_check_mark" in json.dumps(probe_line) and " ms" in json.dumps(probe_line)
    click(driver, posted, "UBOB", card.ACTION_APPROVE)
    slack.wait_for("chat.update", where=lambda c: "Applied" in text_of(c))
    (patch,) = agora.calls("PATCH")
    assert patch.json()["storageConfig"]["secretKey"] == keys.secret
    seen = slack.payload_text() + "\n".join(r.getMessage() for r in caplog.records)
    assert keys.secret not in seen and keys.access not in seen and CUSTOMER_SECRET not in seen


def test_a_wrong_secret_goes_back_on_the_form_and_nothing_is_stored(driver, slack, agora, bot, keys) -> None:
    before = rows(bot)
    submit_storage(driver, slack, keys.access, "wrong-secret-value-0123456789")
    again = final_view(slack)
    blocks = {b.get("block_id"): b for b in again["blocks"]}
    problem = json.dumps(blocks[f"{form.BLOCK_SECRET_KEY}_problem"])
    assert "SignatureDoesNotMatch" in problem and "type both keys again" in problem
    assert "initial_value" not in blocks[form.BLOCK_SECRET_KEY]["element"]
    assert blocks[form.BLOCK_BUCKET]["element"]["initial_value"] == BUCKET  # what was typed, but the keys
    assert again["callback_id"] == form.CALLBACK_EDIT and again["submit"]  # the form, ready to submit again
    bot.drain()
    assert rows(bot) == before and agora.calls("PATCH") == []
    assert not [c for c in slack.of("chat.postMessage") if c.params.get("channel") == "CAPPROVE"]
    assert "wrong-secret-value-0123456789" not in slack.payload_text()


@pytest.mark.parametrize(
    ("bucket", "field", "code"), [("no-such-bucket", form.BLOCK_BUCKET, "NoSuchBucket")], ids=["missing-bucket"]
)
def test_a_missing_bucket_is_shown_under_the_bucket(driver, slack, bot, keys, bucket, field, code) -> None:
    submit_storage(driver, slack, keys.access, keys.secret, bucket=bucket)
    blocks = {b.get("block_id"): b for b in final_view(slack)["blocks"]}
    assert code in json.dumps(blocks[f"{field}_problem"])


def test_keys_revoked_while_waiting_fail_the_request_before_the_patch(driver, slack, agora, bot, s3) -> None:
    revoked = s3.user("flow-revoked", "s3:PutObject", "s3:GetObject", "s3:DeleteObject")
    submit_storage(driver, slack, revoked.access, revoked.secret)
    posted = posted_card(slack)
    s3.revoke("flow-revoked", revoked)
    click(driver, posted, "UBOB", card.ACTION_APPROVE)
    (notice,) = slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "UALICE")
    assert "Failed" in text_of(notice) and "storage check just before applying failed" in text_of(notice)
    assert "InvalidAccessKeyId" in card_shown(slack, posted)
    bot.drain()
    assert agora.calls("PATCH") == []


class TestUnreachable:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any], unused_port) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_STORAGE_ENDPOINT_OVERRIDE": f"http://127.0.0.1:{unused_port}"}

    def test_an_unreachable_endpoint_is_a_warning_on_the_card(self, driver, slack, bot, keys) -> None:
        submit_storage(driver, slack, keys.access, keys.secret)
        assert "approval" in json.dumps(final_view(slack))
        posted = posted_card(slack)
        shown = card_shown(slack, posted)
        assert ":warning: Storage check: could not reach" in shown and "not checked" in shown


class TestSlowEndpoint:
    @pytest.fixture
    def silent(self):
        server = SilentServer().start()
        yield server
        server.stop()

    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any], silent) -> dict[str, Any]:
        return {
            **settings_overrides,
            "RECBOT_STORAGE_ENDPOINT_OVERRIDE": silent.url,
            "RECBOT_STORAGE_PROBE_TIMEOUT_SECONDS": "1",
        }

    def test_the_form_answers_at_once_and_the_probe_gives_up_in_time(self, driver, slack, bot, keys) -> None:
        acked = submit_storage(driver, slack, keys.access, keys.secret)
        assert acked["response_action"] == "update" and "Checking" in json.dumps(acked["view"])
        outcome = json.dumps(final_view(slack))
        assert "approval" in outcome and "timed out" in outcome


class TestWarnMode:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_STORAGE_PROBE": "warn"}

    def test_a_refusal_is_shown_but_does_not_stop_the_change(self, driver, slack, agora, bot, keys) -> None:
        submit_storage(driver, slack, keys.access, "wrong-secret-value-0123456789")
        posted = posted_card(slack)
        assert ":x: Storage check: write refused" in card_shown(slack, posted)
        click(driver, posted, "UBOB", card.ACTION_APPROVE)
        slack.wait_for("chat.update", where=lambda c: "Applied" in text_of(c))
        assert len(agora.calls("PATCH")) == 1


class TestAzure:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any], azurite) -> dict[str, Any]:
        azurite.container("flow-recordings")
        return {**settings_overrides, "RECBOT_AZURE_ENDPOINT_OVERRIDE": azurite.url}

    def test_an_azure_account_key_is_checked(self, driver, slack, bot, caplog) -> None:
        caplog.set_level(logging.DEBUG)
        submit_storage(driver, slack, AZURITE_ACCOUNT, AZURITE_KEY, vendor=5, bucket="flow-recordings")
        posted = posted_card(slack)
        assert "Storage check: write, read, delete: ok at" in card_shown(slack, posted)
        seen = slack.payload_text() + "\n".join(r.getMessage() for r in caplog.records)
        assert AZURITE_KEY not in seen and AZURITE_ACCOUNT not in seen
