"""Listeners of fleet-wide jobs once approved: the Pause, Resume and Cancel buttons (of the
progress message and of `/recording jobs`) and `/recording jobs` itself. Who may act on a
job: its requester and the approvers (RECBOT_APPROVERS); anyone else is told so, alone."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.approvals import Refused
from bot.services import Services
from handlers.blocks import job_progress
from handlers.bulk import refresh_job_cards
from handlers.job_notify import JobNotifier
from handlers.notify import GroupLookup, job_control

log = logging.getLogger(__name__)

NOT_GENUINE = "That button is not a genuine recbot job button; nothing was done."
EVENTS = {
    job_progress.ACTION_PAUSE: "pause",
    job_progress.ACTION_RESUME: "resume",
    job_progress.ACTION_CANCEL: "cancel",
}


def register(app: App, services: Services) -> None:
    for action_id, event in EVENTS.items():
        app.action(action_id)(_mover(services, event))


def _mover(services: Services, event: str) -> Callable[..., None]:
    def clicked(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        """Move the job the button names, if the clicker may; the progress message is redrawn in its
        turn (at most one edit per EDIT_GAP)."""
        ack()
        user = body["user"]["id"]
        job_id = job_progress.read_button_value((body.get("actions") or [{}])[0].get("value"), services.sealer)
        if job_id is None:
            _tell(respond, NOT_GENUINE)
            return
        is_approver = services.approvers.includes(user, GroupLookup(client))
        try:
            job = job_control(services).move(job_id, event, user, is_approver=is_approver)
        except Refused as refusal:
            _tell(respond, str(refusal))
            return
        ref, clicked_on = job.progress_ref, (body.get("container") or {}).get("message_ts")
        if ref is None or clicked_on != ref.ts:  # clicked elsewhere than the message that shows it
            _tell(respond, f"Job `{job.id}` is now {job.state}.")
        refresh_job_cards(client, services, job.id)  # its approval cards say paused, being applied, or how it ended
        JobNotifier(client, services).show(job.id, forced=True)  # in its turn: up to EDIT_GAP from now

    return clicked


def show_jobs(user: str, services: Services, client: WebClient, respond: Respond) -> None:
    """`/recording jobs`, to the person alone: the jobs, and buttons on those they may act on."""
    views = job_control(services).overview()
    is_approver = services.approvers.includes(user, GroupLookup(client))
    may_act = {v.job.id for v in views if is_approver or v.job.requester == user}
    blocks = job_progress.jobs_list(views, services.sealer, may_act)
    respond(blocks=blocks, text=f"Fleet-wide jobs: {len(views)}", response_type="ephemeral")


def _tell(respond: Respond, text: str) -> None:
    """Answer the person who clicked, alone, leaving the message as it is."""
    respond(text=text, response_type="ephemeral", replace_original=False)
