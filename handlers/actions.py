"""Interactive components: the edit form's vendor select, the approval card's
and the drift alert's buttons, the fleet table, the picker, the App Home's buttons."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.agora import AgoraError
from bot.approvals import Refused
from bot.commands import Command
from bot.drift import AlertClosed
from bot.fleet import Scan, to_csv
from bot.models import Target
from bot.services import Services
from bot.store.values import CardRef, RequestRow
from handlers.blocks import approval_card, drift_card, edit_form, fleet, home, picker
from handlers.commands import fill_edit_form, open_edit_form, replace, show_config
from handlers.notify import SLACK_FAILURES, GroupLookup, Notifier, file_not_taken, why_failed

log = logging.getLogger(__name__)


def register(app: App, services: Services) -> None:
    @app.action(edit_form.ACTION_VENDOR)
    def vendor_chosen(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        """Show exactly the chosen vendor's regions, keeping what was typed."""
        ack()
        view = body.get("view") or {}
        try:
            metadata = edit_form.FormMetadata.load(view.get("private_metadata"), services.sealer)
        except ValueError:
            log.warning("vendor select on a view without valid metadata; ignored")
            return
        try:
            values = edit_form.read_values(view.get("state"))
        except edit_form.MalformedForm:
            log.warning("vendor select on a view with unreadable state; ignored")
            return
        client.views_update(
            view_id=view["id"],
            hash=view.get("hash"),
            view=edit_form.form_view(metadata, services.sealer, values, edit_form.current_block_of(view)),
        )

    @app.action(approval_card.ACTION_APPROVE)
    def approve(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        ack()
        user = body["user"]["id"]
        is_approver = services.approvers.includes(user, GroupLookup(client))
        row = _decide(
            body, respond, services, lambda rid: services.approvals.approve(rid, user, is_approver=is_approver)
        )
        if row is not None:
            _after_decision(row, Notifier(client, services), respond)

    @app.action(approval_card.ACTION_REJECT)
    def reject(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        """Ask for a reason first; the rejection happens when the reason is submitted."""
        ack()
        user = body["user"]["id"]
        is_approver = services.approvers.includes(user, GroupLookup(client))
        rejectable = services.approvals.rejectable
        row = _decide(body, respond, services, lambda rid: rejectable(rid, user, is_approver=is_approver))
        if row is not None:
            client.views_open(trigger_id=body["trigger_id"], view=approval_card.reject_modal(row, services.sealer))

    @app.action(approval_card.ACTION_CANCEL)
    def cancel(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        ack()
        user = body["user"]["id"]
        row = _decide(body, respond, services, lambda rid: services.approvals.cancel(rid, user))
        if row is not None:
            _after_decision(row, Notifier(client, services), respond)


EXPIRED_LIST = "This list has expired; run `/recording list` again."


def _kept_scan(value: Any, services: Services, parts: int, scan_at: int = 0) -> tuple[list[str], Scan] | None:
    """The fields of a genuine fleet value and the scan it names, if still kept (by any instance)."""
    fields = fleet.read_value(value, services.sealer, parts)
    scan = services.fleet.kept(fields[scan_at]) if fields else None
    return (fields, scan) if fields and scan else None


def register_fleet(app: App, services: Services) -> None:
    @app.action(re.compile(f"^{fleet.ACTION_PAGE}_"))
    def page(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        found = _kept_scan((body.get("actions") or [{}])[0].get("value"), services, 2)
        if found is None:
            tell(respond, EXPIRED_LIST)
            return
        (_, number), scan = found
        switches = services.switches.book.known_of_app(scan.app_id)
        replace(respond, fleet.page(scan, int(number), services.sealer, switches), fleet.page_text(scan))

    @app.action(fleet.ACTION_CSV)
    def download_csv(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        """The whole table as a CSV file, into the user's direct messages with the bot (the user's alone)."""
        ack()
        found = _kept_scan((body.get("actions") or [{}])[0].get("value"), services, 1)
        if found is None:
            tell(respond, EXPIRED_LIST)
            return
        scan = found[1]
        user = body["user"]["id"]
        try:
            dm = client.conversations_open(users=user)["channel"]["id"]
            client.files_upload_v2(
                channel=dm,
                content=to_csv(scan, services.switches.book.known_of_app(scan.app_id)),
                filename=f"recording-configs-{scan.app_id}.csv",
                title=f"Recording configurations of App ID {scan.app_id}",
                initial_comment="The list you asked for; keys are masked, as in Slack.",
            )
        except SLACK_FAILURES as exc:
            log.error("could not send the fleet CSV: %s", why_failed(exc))
            tell(respond, file_not_taken(exc))
            return
        tell(respond, "Sent: the CSV is in your direct messages with recbot.")

    @app.action(fleet.ACTION_ROW)
    def row_chosen(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        """Get or Change on a row: what `/recording get|set` does for that entry point."""
        ack()
        option = (body.get("actions") or [{}])[0].get("selected_option") or {}
        found = _kept_scan(option.get("value"), services, 3, scan_at=1)
        parts, rows = (found[0], fleet.shown_rows(found[1])) if found else ([], [])
        index = int(parts[2]) if parts and parts[2].isdigit() else -1
        target = rows[index].target if 0 <= index < len(rows) else None
        if target is None:
            tell(respond, EXPIRED_LIST)
            return
        parsed = Command(parts[0], target)  # type: ignore[arg-type]
        if parts[0] == fleet.GET:
            show_config(parsed, services, respond)
        elif services.requesters.includes(body["user"]["id"], GroupLookup(client)):
            open_edit_form(parsed, body["trigger_id"], services, client, respond)
        else:
            tell(respond, "You are not in RECBOT_REQUESTERS, so you cannot change recording configurations.")


def register_picker(app: App, services: Services) -> None:
    @app.options(picker.ACTION_ENTRY_POINT)
    def entry_point_options(ack: Ack, body: dict[str, Any]) -> None:
        """The app's entry points containing what was typed (the list is cached briefly)."""
        picked = picker.read_block_id(body.get("block_id"), services.sealer)
        if picked is None:
            ack(options=[])
            return
        try:
            names = services.fleet.matching(picked[1], str(body.get("value") or ""))
        except AgoraError as exc:
            log.warning("could not list entry points for the picker: %s", type(exc).__name__)
            names = []
        ack(options=picker.options(names))

    @app.action(picker.ACTION_REGION)
    def region_picked(ack: Ack) -> None:
        ack()  # read from the state when the entry point is chosen

    @app.action(picker.ACTION_ENTRY_POINT)
    def entry_point_picked(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        ack()
        action = (body.get("actions") or [{}])[0]
        picked = picker.read_block_id(action.get("block_id"), services.sealer)
        name = str((action.get("selected_option") or {}).get("value") or "")
        view = body.get("view") or {}
        state = view.get("state") if view else body.get("state")
        region = picker.chosen_region(state, str(action.get("block_id")), services.settings.AGORA_DEFAULT_REGION)
        try:
            target = Target(app_id=picked[1], entry_point=name, region=region) if picked else None
        except ValidationError:
            target = None
        if picked is None or target is None:
            if body.get("response_url"):  # a message; a modal has no response_url to answer through
                tell(respond, "That choice could not be read; run `/recording get` or `/recording set` again.")
            log.warning("an entry-point choice that is not genuine or not readable was ignored")
            return
        if picked[0] == "get":
            show_config(Command("get", target), services, respond)
        else:
            fill_edit_form(view, target, services, client)


def register_drift(app: App, services: Services) -> None:
    @app.action(drift_card.ACTION_ACKNOWLEDGE)
    def acknowledge(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        """An approver accepts a change made outside recbot: it becomes what recbot compares with."""
        ack()
        alert_id = _genuine_alert(body, services)
        if alert_id is None:
            tell(respond, "That button is not a genuine recbot alert button; nothing was done.")
            return
        user = body["user"]["id"]
        if not services.approvers.includes(user, GroupLookup(client)):
            tell(respond, "Only the approvers named in RECBOT_APPROVERS can acknowledge a change made outside recbot.")
            return
        try:
            services.drift.acknowledge(alert_id, user)
        except AlertClosed as closed:
            tell(respond, str(closed))
            return
        Notifier(client, services).refresh_alert(alert_id)

    @app.action(drift_card.ACTION_REVERT)
    def revert(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        """The form, filled with what recbot saw before the change; submitting it takes the normal path."""
        ack()
        alert_id = _genuine_alert(body, services)
        if alert_id is None:
            tell(respond, "That button is not a genuine recbot alert button; nothing was done.")
            return
        if not services.requesters.includes(body["user"]["id"], GroupLookup(client)):
            tell(respond, "You are not in RECBOT_REQUESTERS, so you cannot change recording configurations.")
            return
        try:
            alert = services.drift.open_alert(alert_id)
        except AlertClosed as closed:
            tell(respond, str(closed))
            return
        parsed = Command("set", alert.target)
        open_edit_form(parsed, body["trigger_id"], services, client, respond, revert_to=alert.before)


def _genuine_alert(body: dict[str, Any], services: Services) -> str | None:
    """The alert id of a genuine button clicked on that alert's own card, else None."""
    read = drift_card.read_button_value((body.get("actions") or [{}])[0].get("value"), services.sealer)
    alert = services.store.drift.alert(read[0]) if read else None
    return alert.id if read and alert is not None and _on_its_card(body, alert.cards, read[1]) else None


def _on_its_card(body: dict[str, Any], cards: list[CardRef], posted_to: str | None) -> bool:
    """Whether a click came from the card its button is on: one recbot recorded, or, while
    recbot has recorded no card in that channel yet (Slack can deliver a click before the
    answer to chat.postMessage, which gives the card's ts), a message in the channel the
    button's MAC names. The button replayed into another channel, or onto another message
    once the card is recorded, is refused."""
    container = body.get("container") or {}
    channel, ts = container.get("channel_id"), container.get("message_ts")
    if not channel or not ts:
        return False
    if any(ref.channel == channel and ref.ts == ts for ref in cards):
        return True
    if posted_to is None or any(ref.channel == channel for ref in cards):
        return False
    # A card posted to a user lands in their direct messages with recbot, whose channel ID (D...) Slack picks.
    clicker = (body.get("user") or {}).get("id")
    return channel == posted_to or (posted_to == clicker and str(channel).startswith("D"))


def register_home(app: App, services: Services) -> None:
    @app.action(home.ACTION_APPROVE)
    def approve_from_home(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        """Approve from the App Home; the answer is a line at the top of the home, which has no reply thread."""
        ack()
        user = body["user"]["id"]
        notifier = Notifier(client, services)
        request_id = home.read_button_value((body.get("actions") or [{}])[0].get("value"), services.sealer)
        if request_id is None:
            notifier.publish_home(user, "That button is not a genuine recbot button; nothing was done.", "refused")
            return
        is_approver = services.approvers.includes(user, GroupLookup(client))
        try:
            row = services.approvals.approve(request_id, user, is_approver=is_approver)
        except Refused as refusal:
            notifier.publish_home(user, str(refusal), "refused")
            return
        if row.is_open:
            notifier.refresh_cards(row.id)
        else:
            notifier.request_ended(row)
        notifier.publish_home(user, f"You approved request {row.id}; it is {row.state}.")

    @app.action(home.ACTION_CANCEL)
    def cancel_from_home(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        """The requester withdraws their own pending request from the App Home (a request whose
        card could not be posted can be cancelled nowhere else)."""
        ack()
        user = body["user"]["id"]
        notifier = Notifier(client, services)
        request_id = home.read_button_value((body.get("actions") or [{}])[0].get("value"), services.sealer)
        if request_id is None:
            notifier.publish_home(user, "That button is not a genuine recbot button; nothing was done.", "refused")
            return
        try:
            row = services.approvals.cancel(request_id, user)
        except Refused as refusal:
            notifier.publish_home(user, str(refusal), "refused")
            return
        notifier.request_ended(row)
        notifier.publish_home(user, f"You cancelled request {row.id}; nothing was sent to Agora.")

    @app.action(home.ACTION_REJECT)
    def reject_from_home(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        """Ask for a reason, as on the card; the rejection happens when it is submitted."""
        ack()
        user = body["user"]["id"]
        request_id = home.read_button_value((body.get("actions") or [{}])[0].get("value"), services.sealer)
        is_approver = services.approvers.includes(user, GroupLookup(client))
        try:
            row = services.approvals.rejectable(request_id or "", user, is_approver=is_approver)
        except Refused as refusal:
            Notifier(client, services).publish_home(user, str(refusal), "refused")
            return
        client.views_open(trigger_id=body["trigger_id"], view=approval_card.reject_modal(row, services.sealer))


def _decide(
    body: dict[str, Any], respond: Respond, services: Services, decision: Callable[[str], RequestRow]
) -> RequestRow | None:
    """Run `decision` on the request a genuine button names; refusals go to the clicker alone."""
    request_id = _genuine_request(body, services)
    if request_id is None:
        tell(respond, "That button is not a genuine recbot approval button; nothing was done.")
        return None
    try:
        return decision(request_id)
    except Refused as refusal:
        tell(respond, str(refusal))
        return None


def _genuine_request(body: dict[str, Any], services: Services) -> str | None:
    """The request id of a genuine button clicked on that request's own card, else None."""
    actions = body.get("actions") or [{}]
    read = approval_card.read_card_button_value(actions[0].get("value"), services.sealer)
    row = services.store.requests.get(read[0]) if read else None
    return row.id if read and row is not None and _on_its_card(body, row.cards, read[1]) else None


def _after_decision(row: RequestRow, notifier: Notifier, respond: Respond) -> None:
    """Announce a move this click made (a click that made none was refused and told)."""
    if row.is_open:
        notifier.refresh_cards(row.id)
        tell(respond, f"Noted. Request `{row.id}` is {row.state}: {notifier.approvals_line(row)}.")
    else:
        notifier.request_ended(row)


def tell(respond: Respond, text: str) -> None:
    """Answer the person who clicked, alone, leaving the card as it is."""
    respond(text=text, response_type="ephemeral", replace_original=False)
