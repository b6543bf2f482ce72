"""Fleet-wide changes in Slack: `/recording bulk` and the fleet table's "Change these" open the
modal; a valid submission closes it, and after the ack the plan is made (the requester's DM says
"planning…", then shows the plan card and the plan's CSV), and one approval card of the job goes
where request cards go. Every decision redraws every card and tells the requester; refusals go
to the clicker alone."""

from __future__ import annotations

import logging
from typing import Any, Literal

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.approvals import Refused
from bot.bulk_change import BulkRequest
from bot.bulk_plan import PlanError, to_csv
from bot.commands import Command
from bot.services import Services
from bot.store.values import CardRef, JobRow, Vote
from handlers.blocks import bulk_form, edit_form, job_card, messages
from handlers.notify import MAX_CARD_PASSES, SLACK_FAILURES, GroupLookup, file_not_taken

log = logging.getLogger(__name__)

NOT_A_REQUESTER = "You are not in RECBOT_REQUESTERS, so you cannot change recording configurations."
NOT_GENUINE = "That button is not a genuine recbot button; nothing was done."
EXPIRED_LIST = "This list has expired; run `/recording list` again."


def run_command(
    parsed: Command, user: str, trigger_id: str, services: Services, client: WebClient, respond: Respond
) -> Literal["ok", "refused", "failed"]:
    """`/recording bulk [--app APPID]`: the modal, for requesters only, with the App ID and the default region."""
    if not services.requesters.includes(user, GroupLookup(client)):
        respond(blocks=messages.error(f"{NOT_A_REQUESTER} Ask whoever runs recbot."), text=NOT_A_REQUESTER)
        return "refused"
    assert parsed.app_id is not None
    opened = open_bulk_form(trigger_id, parsed.app_id, (services.settings.AGORA_DEFAULT_REGION,), client, respond)
    return "ok" if opened else "failed"


def open_bulk_form(
    trigger_id: str, app_id: str, regions: tuple[str, ...], client: WebClient, respond: Respond | None
) -> bool:
    """Open the modal at once, while the trigger is fresh; nothing is read before it is submitted."""
    try:
        client.views_open(trigger_id=trigger_id, view=bulk_form.form_view(app_id, regions))
    except SlackApiError as exc:
        log.warning("views.open failed: %s", exc.response.get("error"))
        if respond is not None:
            _tell(respond, "Slack did not open the form (it may have taken too long). Try again.")
        return False
    return True


def _tell(respond: Respond, text: str) -> None:
    """Answer the person who clicked, alone, leaving the message as it is."""
    respond(text=text, response_type="ephemeral", replace_original=False)


def register(app: App, services: Services) -> None:
    @app.action(bulk_form.ACTION_CHANGE_THESE)
    def change_these(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        """The modal, filled with the fleet table's App ID and regions."""
        ack()
        scan_id = bulk_form.read_scan_id((body.get("actions") or [{}])[0].get("value"), services.sealer)
        scan = services.fleet.kept(scan_id) if scan_id else None
        if scan is None:
            _tell(respond, EXPIRED_LIST if scan_id else NOT_GENUINE)
            return
        if not services.requesters.includes(body["user"]["id"], GroupLookup(client)):
            _tell(respond, NOT_A_REQUESTER)
            return
        open_bulk_form(body["trigger_id"], scan.app_id, scan.regions, client, respond)

    @app.action(bulk_form.ACTION_NEW_VENDOR)
    def new_vendor_chosen(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        """Show exactly the chosen vendor's regions, keeping what was typed."""
        ack()
        view = body.get("view") or {}
        if view.get("id"):
            region = bulk_form.with_regions_of(view, bulk_form.chosen_vendor(view))
            client.views_update(view_id=view["id"], hash=view.get("hash"), view=region)

    @app.view(bulk_form.CALLBACK_BULK)
    def submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        """Validate before acking (errors go back on the modal), then plan after the ack."""
        user = body["user"]["id"]
        if not services.requesters.includes(user, GroupLookup(client)):
            ack(response_action="update", view=bulk_form.refused_view(NOT_A_REQUESTER))
            return
        request, errors = bulk_form.read_request(view.get("state"))
        if errors or request is None:
            ack(response_action="errors", errors=errors)
            return
        ack()
        ask(request, user, services, client)

    @app.action(job_card.ACTION_APPROVE)
    def approve(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        ack()
        user = body["user"]["id"]
        job_id = _genuine_job(body, services, respond)
        if job_id is None:
            return
        is_approver = services.approvers.includes(user, GroupLookup(client))
        try:
            approval = services.bulk.approve(job_id, user, is_approver=is_approver)
        except Refused as refusal:
            _tell(respond, str(refusal))
            return
        refresh_job_cards(client, services, job_id)
        if approval.started:
            tell_requester(client, services, approval.job)
        elif approval.vote is Vote.COUNTED:  # another vote may have completed it since: the card says so
            needed = services.bulk.required_approvals
            _tell(respond, f"Noted. Your approval of job `{job_id}` is counted; it needs {needed} in all.")

    @app.action(job_card.ACTION_REJECT)
    def reject(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        """Ask for a reason first; the rejection happens when the reason is submitted."""
        ack()
        job_id = _genuine_job(body, services, respond)
        if job_id is None:
            return
        user = body["user"]["id"]
        is_approver = services.approvers.includes(user, GroupLookup(client))
        try:
            job = services.bulk.rejectable(job_id, user, is_approver=is_approver)
        except Refused as refusal:
            _tell(respond, str(refusal))
            return
        client.views_open(trigger_id=body["trigger_id"], view=job_card.reject_modal(job, services.sealer))

    @app.action(job_card.ACTION_CANCEL)
    def cancel(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        ack()
        job_id = _genuine_job(body, services, respond)
        if job_id is not None:
            _cancel(job_id, body["user"]["id"], services, client, respond)

    @app.action(job_card.ACTION_CANCEL_PLAN)
    def cancel_from_plan(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        """The requester withdraws the job from their plan (approval cards in approvers' DMs they cannot see)."""
        ack()
        job_id = job_card.read_job_value((body.get("actions") or [{}])[0].get("value"), services.sealer)
        if job_id is None:
            _tell(respond, NOT_GENUINE)
            return
        _cancel(job_id, body["user"]["id"], services, client, respond)

    @app.view(job_card.CALLBACK_REJECT)
    def reject_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        job_id = job_card.read_job_value(view.get("private_metadata"), services.sealer)
        reason = edit_form.read_text(view.get("state"), job_card.BLOCK_REASON)
        if job_id is None:
            ack(
                response_action="update", view=edit_form.message_view(":x: This form is not genuine; nothing was done.")
            )
            return
        if not reason or len(reason) > job_card.MAX_REASON:
            why = "Say why, so the requester can fix it." if not reason else job_card.REASON_TOO_LONG
            ack(response_action="errors", errors={job_card.BLOCK_REASON: why})
            return
        user = body["user"]["id"]
        is_approver = services.approvers.includes(user, GroupLookup(client))
        try:
            job = services.bulk.reject(job_id, user, reason, is_approver=is_approver)
        except Refused as refusal:
            ack(response_action="update", view=edit_form.message_view(f":x: {refusal}"))
            return
        ack()
        announce(client, services, job)


def _cancel(job_id: str, user: str, services: Services, client: WebClient, respond: Respond) -> None:
    try:
        job = services.bulk.cancel(job_id, user)
    except Refused as refusal:
        _tell(respond, str(refusal))
        return
    announce(client, services, job)


def ask(request: BulkRequest, user: str, services: Services, client: WebClient) -> None:
    """Tell the requester it is being planned, make the plan, show it (card and CSV) and post
    the job's approval cards; a refusal replaces the "planning…" message, saying why."""
    planning = client.chat_postMessage(channel=user, text=job_card.planning_text(request.targets.describe()))
    where = {"channel": planning["channel"], "ts": planning["ts"]}
    try:
        planned = services.bulk.ask(request, user)
    except (PlanError, Refused) as exc:
        said = messages.escape_keeping_mentions(str(exc), exc.mentions if isinstance(exc, Refused) else ())
        client.chat_update(**where, text=str(exc)[:300], blocks=messages.text_blocks(f":x: {said}"))
        return
    plan = planned.plan
    blocks = job_card.plan_card(plan, planned.job, planned.note, services.sealer)
    client.chat_update(**where, text=job_card.plan_text(plan), blocks=blocks)
    _send_csv(client, user, to_csv(plan), planned.job)
    if planned.job is not None:
        post_job_cards(client, services, planned.job)


PLAN_CSV_LOST = "the plan card above has the counts."
JOB_CSV_LATER = "the plan card above has the counts, and the job's outcome CSV names every target when it ends."


def _send_csv(client: WebClient, user: str, content: str, job: JobRow | None) -> None:
    """The whole plan as a file in the requester's direct messages (theirs alone)."""
    name = job.id if job is not None else "not-made"
    try:
        dm = client.conversations_open(users=user)["channel"]["id"]
        client.files_upload_v2(
            channel=dm,
            content=content,
            filename=f"fleet-plan-{name}.csv",
            title=f"Plan of fleet-wide change {name}",
            initial_comment="The whole plan, one line per target; keys are fingerprints, as in Slack.",
        )
    except SLACK_FAILURES as exc:
        log.error("could not send the plan's CSV of job %s: %s", name, type(exc).__name__)
        # The plan card says how many targets would change; the CSV names them, so its loss is told.
        said = file_not_taken(exc, PLAN_CSV_LOST if job is None else JOB_CSV_LATER)
        try:
            client.chat_postMessage(
                channel=user, text=said, blocks=messages.text_blocks(f":warning: The plan's CSV was not sent. {said}")
            )
        except SLACK_FAILURES as again:
            log.error("could not tell that the plan's CSV of job %s was not sent: %s", name, type(again).__name__)


def _destinations(client: WebClient, services: Services, requester: str) -> list[str]:
    """Where request cards go: the approval channel, or each approver directly but the requester."""
    channel = services.settings.RECBOT_APPROVAL_CHANNEL
    if channel:
        return [channel]
    return [u for u in services.approvers.users(GroupLookup(client)) if u != requester]


def post_job_cards(client: WebClient, services: Services, job: JobRow) -> None:
    """Post the job's one approval card to each destination, and remember where; if none could be
    posted, the requester is told (they can cancel it from the plan)."""
    cards = []
    for channel in _destinations(client, services, job.requester):
        try:
            posted = client.chat_postMessage(
                channel=channel, text=job_card.card_text(job), blocks=_card(services, job, channel)
            )
        except SLACK_FAILURES as exc:
            log.error("could not post the card of job %s to %s: %s", job.id, channel, type(exc).__name__)
            continue
        cards.append(CardRef(posted["channel"], posted["ts"]))
    services.bulk.attach_cards(job.id, cards)
    if not cards:
        _dm(client, job.requester, job_card.no_card_notice(job))
        return
    refresh_job_cards(client, services, job.id, shown=job.version)  # a click may have come first


def _counts(services: Services, job: JobRow) -> dict[str, int] | None:
    return services.store.jobs.progress(job.id) if job.started_at is not None else None


def _card(services: Services, job: JobRow, channel: str) -> list[dict[str, Any]]:
    return job_card.card(job, services.sealer, services.bulk.required_approvals, channel, _counts(services, job))


def refresh_job_cards(client: WebClient, services: Services, job_id: str, shown: int | None = None) -> None:
    """Redraw every approval card of a job from its row as it is at write time, in any state
    (pending, approved and being applied with its progress, or ended), and again if it moved
    meanwhile, so the last write Slack keeps is the latest; `shown`: the version already drawn."""
    for _ in range(MAX_CARD_PASSES):
        job = services.bulk.get(job_id)
        if job.version == shown:
            return
        for ref in job.cards:
            try:
                client.chat_update(
                    channel=ref.channel,
                    ts=ref.ts,
                    text=job_card.card_text(job),
                    blocks=_card(services, job, ref.channel),
                )
            except SLACK_FAILURES as exc:
                log.error("could not update a card of job %s: %s", job_id, type(exc).__name__)
        shown = job.version
    log.warning("the cards of job %s kept moving; left at version %s", job_id, shown)


def tell_requester(client: WebClient, services: Services, job: JobRow) -> None:
    """Tell the requester, directly, what a decision made of their job."""
    now = services.bulk.get(job.id)
    blocks = job_card.requester_notice(now, services.bulk.required_approvals, _counts(services, now))
    try:
        client.chat_postMessage(channel=now.requester, text=job_card.card_text(now), blocks=blocks)
    except SLACK_FAILURES as exc:
        log.error("could not tell the requester of job %s: %s", job.id, type(exc).__name__)


def announce(client: WebClient, services: Services, job: JobRow) -> None:
    """A move this process made: every card redrawn, then the requester told."""
    refresh_job_cards(client, services, job.id)
    tell_requester(client, services, job)


def _dm(client: WebClient, user: str, text: str) -> None:
    try:
        client.chat_postMessage(channel=user, text=text)
    except SLACK_FAILURES as exc:
        log.error("could not message %s: %s", user, type(exc).__name__)


def _genuine_job(body: dict[str, Any], services: Services, respond: Respond) -> str | None:
    """The job id of a genuine card button clicked on that job's own card; else the clicker is told."""
    read = job_card.read_card_value((body.get("actions") or [{}])[0].get("value"), services.sealer)
    container = body.get("container") or {}
    channel, ts = container.get("channel_id"), container.get("message_ts")
    job = services.store.jobs.get(read[0]) if read else None
    if read is None or job is None or not channel or not ts:
        _tell(respond, NOT_GENUINE)
        return None
    recorded = any(ref.channel == channel and ref.ts == ts for ref in job.cards)
    # Before its card is recorded (a click can beat chat.postMessage's answer), the channel the
    # MAC names, or the clicker's own DM (D...) for a card posted to them.
    clicker = (body.get("user") or {}).get("id")
    named = channel == read[1] or (read[1] == clicker and str(channel).startswith("D"))
    if recorded or (named and not any(ref.channel == channel for ref in job.cards)):
        return job.id
    _tell(respond, NOT_GENUINE)
    return None
