"""The storage probe in the change flow: on submit (a refusal goes back on the
form and nothing is stored), on the approval card, and once more just before
the PATCH. Against moto's S3 server and Azurite, on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.store.schema import audit_events, change_requests
from handlers.blocks import approval_card as card
from handlers.blocks import edit_form as form
from tests.approval_helpers import card_shown, click, text_of
from tests.conftest import CUSTOMER_SECRET
from tests.storage_endpoints import CountingListener, ScriptedS3, s3_error
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
    assert (
        f"write refused at {bot.services.settings.RECBOT_STORAGE_ENDPOINT_OVERRIDE}: SignatureDoesNotMatch" in problem
    )
    assert "the secret key does not belong to this access key" in problem and "type both keys again" in problem
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


def test_write_only_keys_pass_and_the_card_names_the_object_left(driver, slack, agora, bot, s3) -> None:
    """Agora suggests keys that can only write: the read-back and the delete are then not
    permitted, which the card says, naming the object left in the bucket; the change goes on."""
    writer = s3.user("flow-put-only", "s3:PutObject")
    submit_storage(driver, slack, writer.access, writer.secret)
    posted = posted_card(slack)
    shown = card_shown(slack, posted)
    assert ":white_check_mark: Storage check: write: ok at" in shown
    assert (
        "read and delete not permitted (write-only keys), so `.recbot-probe/" in shown
        and "stays in the bucket" in shown
    )
    left = [k for k in s3.objects(BUCKET) if k.startswith(".recbot-probe/")]
    assert len(left) == 1 and left[0] in shown
    click(driver, posted, "UBOB", card.ACTION_APPROVE)
    slack.wait_for("chat.update", where=lambda c: "Applied" in text_of(c))
    assert len(agora.calls("PATCH")) == 1


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


class TestSilentEndpoint:
    @pytest.fixture
    def silent(self):
        server = CountingListener()
        yield server
        server.stop()

    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any], silent) -> dict[str, Any]:
        return {
            **settings_overrides,
            "RECBOT_STORAGE_ENDPOINT_OVERRIDE": silent.url,
            "RECBOT_STORAGE_PROBE_TIMEOUT_SECONDS": "1",
        }

    def test_each_check_makes_one_connection_and_gives_up(self, driver, slack, agora, bot, keys, silent) -> None:
        """At submit and again at approval: one attempt, no second try, and the timeout bounds
        the whole check (a later step would be a second connection)."""
        acked = submit_storage(driver, slack, keys.access, keys.secret)
        assert acked["response_action"] == "update" and "Checking" in json.dumps(acked["view"])
        outcome = json.dumps(final_view(slack))
        assert "approval" in outcome and f"could not reach {silent.url} (timed out)" in outcome
        assert silent.connections() == 1
        posted = posted_card(slack)
        click(driver, posted, "UBOB", card.ACTION_APPROVE)
        slack.wait_for("chat.update", where=lambda c: "Applied" in text_of(c))
        assert silent.connections() == 2 and len(agora.calls("PATCH")) == 1


@pytest.fixture
def scripted(request):
    """An S3 endpoint answering as the test's parameter says: what moto cannot (see storage_endpoints)."""
    server = ScriptedS3(**request.param)
    yield server
    server.stop()


class TestScriptedEndpoint:
    """A vendor answer moto cannot give: a bucket in another region, a wrong size read back."""

    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any], scripted) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_STORAGE_ENDPOINT_OVERRIDE": scripted.url}

    @pytest.mark.parametrize(
        "scripted", [{"PUT": s3_error(301, "PermanentRedirect", {"x-amz-bucket-region": "eu-west-1"})}], indirect=True
    )
    def test_a_bucket_in_another_region_is_refused_under_the_region(self, driver, slack, agora, bot, scripted) -> None:
        before = rows(bot)
        submit_storage(driver, slack, "AKIA0000EXAMPLE", "secret-0000")
        blocks = {b.get("block_id"): b for b in final_view(slack)["blocks"]}
        problem = json.dumps(blocks[f"{form.BLOCK_REGION}_problem"])
        assert "write refused at" in problem and "PermanentRedirect" in problem
        assert "the bucket is in region eu-west-1; choose EU_WEST_1 (4)" in problem
        assert scripted.methods() == ["PUT"]  # never followed to eu-west-1
        bot.drain()
        assert rows(bot) == before and agora.calls("PATCH") == []

    @pytest.mark.parametrize("scripted", [{"HEAD": (200, {"Content-Length": "3"}, b"")}], indirect=True)
    def test_the_failed_step_is_named_on_the_form(self, driver, slack, bot, scripted) -> None:
        submit_storage(driver, slack, "AKIA0000EXAMPLE", "secret-0000")
        blocks = {b.get("block_id"): b for b in final_view(slack)["blocks"]}
        problem = json.dumps(blocks[f"{form.BLOCK_BUCKET}_problem"])
        assert f"read refused at {scripted.url}: SizeMismatch (3 bytes read back" in problem
        assert "was written and not deleted" in problem


class TestScriptedEndpointWarnMode:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any], scripted) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_STORAGE_PROBE": "warn", "RECBOT_STORAGE_ENDPOINT_OVERRIDE": scripted.url}

    @pytest.mark.parametrize("scripted", [{"DELETE": s3_error(409, "OperationAborted")}], indirect=True)
    def test_the_failed_step_and_an_unmapped_code_are_shown_on_the_card(self, driver, slack, scripted) -> None:
        submit_storage(driver, slack, "AKIA0000EXAMPLE", "secret-0000")
        shown = card_shown(slack, posted_card(slack))
        assert f":x: Storage check: delete refused at {scripted.url}: OperationAborted (the vendor refused it)" in shown


class TestWarnMode:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_STORAGE_PROBE": "warn"}

    def test_a_refusal_is_shown_but_does_not_stop_the_change(self, driver, slack, agora, bot, keys, s3) -> None:
        submit_storage(driver, slack, keys.access, "wrong-secret-value-0123456789")
        posted = posted_card(slack)
        assert f":x: Storage check: write refused at {s3.url}: SignatureDoesNotMatch (the secret" in card_shown(
            slack, posted
        )
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


class TestAzureAccountDnsDoesNotKnow:
    """No Azure override: the account's host is the vendor's own, and its lookup is answered
    in-process ("no such name"), so no query leaves the machine."""

    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        return {**settings_overrides, "RECBOT_AZURE_ENDPOINT_OVERRIDE": ""}

    @pytest.fixture
    def looked_up(self, monkeypatch):
        real = socket.getaddrinfo
        names: list[str] = []

        def lookup(host, *args, **kwargs):
            if host in ("127.0.0.1", "localhost"):
                return real(host, *args, **kwargs)  # the fakes: no query is made for these
            names.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (simulated)")

        monkeypatch.setattr(socket, "getaddrinfo", lookup)
        return names

    def test_a_mistyped_account_is_refused_under_the_access_key(self, driver, slack, agora, bot, looked_up) -> None:
        before = rows(bot)
        submit_storage(driver, slack, "mistypedaccount", AZURITE_KEY, vendor=5, bucket="recordings")
        blocks = {b.get("block_id"): b for b in final_view(slack)["blocks"]}
        problem = json.dumps(blocks[f"{form.BLOCK_ACCESS_KEY}_problem"])
        assert "write refused at blob.core.windows.net (account ...ount): NoSuchAccount" in problem
        assert "no Azure storage account has this name" in problem
        assert looked_up == ["mistypedaccount.blob.core.windows.net"]
        bot.drain()
        assert rows(bot) == before and agora.calls("PATCH") == []
