"""Telling people: approval cards and drift alerts (posted, then updated in
place), the requester's notice, and the App Home of whoever looks at it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import partial

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.job_control import JobControl
from bot.services import Services
from bot.store.values import AlertRow, CardRef, RequestRow, utcnow
from handlers.blocks import approval_card, drift_card, home
from handlers.blocks import switch as switch_blocks

log = logging.getLogger(__name__)


class GroupLookup:
    """Resolves a user-group ID with `usergroups.users.list`, at the moment it is asked."""

    def __init__(self, client: WebClient) -> None:
        self._client = client

    def __call__(self, group_id: str) -> Iterable[str]:
        return self._client.usergroups_users_list(usergroup=group_id)["users"]


# Each pass writes the cards from the row as it is then; a pass is needed only
# when the row moved during the previous one, which a few approvals can do.
MAX_CARD_PASSES = 5
SLACK_FAILURES = (SlackApiError, SlackClientError, OSError)
# Slack errors about the message, channel or person itself: trying again later cannot help.
# Any other failure (rate limits, an outage, the network, a token being fixed) may pass.
LASTING_ERRORS = frozenset(
    {
        "channel_not_found",
        "message_not_found",
        "cant_update_message",
        "edit_window_closed",
        "is_archived",
        "not_in_channel",
        "user_not_found",
        "user_disabled",
        "cannot_dm_bot",
        "invalid_blocks",
        "msg_too_long",
    }
)


class Notifier:
    """Posts and updates approval cards and tells requesters. Call it only for
    a move this process made: then the last card write shows the latest state."""

    def __init__(self, client: WebClient, services: Services) -> None:
        self._client = client
        self._services = services

    def _destinations(self, but: str | None = None) -> list[str]:
        """The approval channel, or each approver directly (but `but`) when none is set."""
        settings = self._services.settings
        if settings.RECBOT_APPROVAL_CHANNEL:
            return [settings.RECBOT_APPROVAL_CHANNEL]
        return [u for u in self._services.approvers.users(GroupLookup(self._client)) if u != but]

    def _post(self, channels: list[str], text: str, blocks: Callable[[str], list[dict]], what: str) -> list[CardRef]:
        """Post a card to each channel (its buttons name the channel); where they landed."""
        cards = []
        for channel in channels:
            try:
                posted = self._client.chat_postMessage(channel=channel, text=text, blocks=blocks(channel))
            except SLACK_FAILURES as exc:
                log.error("could not post the card of %s to %s: %s", what, channel, why_failed(exc))
                continue
            cards.append(CardRef(posted["channel"], posted["ts"]))
        return cards

    def post_cards(self, row: RequestRow) -> bool:
        """To the approval channel, or to each approver directly when none is set, by whoever
        opened the request (`row.announce_token`, its claim on posting them). If none could be
        posted, the requester is told, and False is returned: every sweep tries again (repost_cards)."""
        token = row.announce_token or self._services.store.announcements.claim_cards(row.id)
        if token is None:
            return True  # a sweep is posting them right now
        posted = self._post_cards(row, token)
        # Whoever moved the request while the cards were being posted found no cards to update;
        # and the homes show it either way (an approver can decide it there, card or not).
        self.refresh_cards(row.id, shown=row.version)
        if not posted:
            self.tell(row.requester, approval_card.no_card_notice(row))
        return bool(posted)

    def repost_cards(self, row: RequestRow, stale_claims_before: datetime | None = None) -> bool:
        """The sweep's: post the cards of a pending request that has none, once across every
        process (claimed first, with `stale_claims_before` also from a poster that stopped); the
        requester, told none could be posted, is told they are now. Whether this call posted them."""
        token = self._services.store.announcements.claim_cards(row.id, stale_before=stale_claims_before)
        if token is None or not self._post_cards(row, token):
            return False
        self.refresh_cards(row.id, shown=row.version)  # it may have moved since the sweep listed it
        self.tell(row.requester, approval_card.card_posted_notice(row))
        return True

    def _post_cards(self, row: RequestRow, token: str) -> list[CardRef]:
        """Post the cards of `row` holding the claim `token`, record where they landed, then give
        the claim back: with cards recorded nobody claims it again, with none the next sweep does."""
        try:
            channels = self._destinations(but=row.requester)
            cards = self._post(channels, approval_card.card_text(row), partial(self._card, row), f"request {row.id}")
            if cards:
                self._services.approvals.attach_cards(row.id, cards)
        finally:
            self._services.store.announcements.release(row.id, token)
        return cards

    def refresh_cards(self, request_id: str, shown: int | None = None) -> None:
        """Write every card from the request as it is at write time, and again
        if it moved meanwhile, so the last write Slack keeps is the latest state;
        then the homes of the people the request concerns."""
        self._write_cards(request_id, shown)
        self.refresh_homes(self._services.approvals.get(request_id))

    def _write_cards(self, request_id: str, shown: int | None) -> bool:
        """Whether the last pass wrote every card (or found it gone for good)."""
        written = True
        for _ in range(MAX_CARD_PASSES):
            row = self._services.approvals.get(request_id)
            if row.version == shown:
                return written
            written = True
            for ref in row.cards:
                try:
                    self._client.chat_update(
                        channel=ref.channel,
                        ts=ref.ts,
                        text=approval_card.card_text(row),
                        blocks=self._card(row, ref.channel),
                    )
                except SLACK_FAILURES as exc:
                    log.error("could not update a card of request %s: %s", row.id, why_failed(exc))
                    written = written and _lasting(exc)
            shown = row.version
        log.warning("the cards of request %s kept moving; left at version %s", request_id, shown)
        return written

    def request_ended(self, row: RequestRow, stale_claims_before: datetime | None = None) -> bool:
        """Announce the end of a request, once across every process: update every card in
        place, then tell the requester directly. Whoever ended it holds the claim on that
        (`row.announce_token`); anyone else claims it first (a compare-and-set), with
        `stale_claims_before` also from a holder that stopped. An announcement that fails
        is released, and the next sweep makes it. Whether this call announced it."""
        announcements = self._services.store.announcements
        token = row.announce_token or announcements.claim(row.id, stale_before=stale_claims_before)
        if token is None:
            return False  # announced, or being announced, by another click or process
        announced = False
        try:
            announced = self._write_cards(row.id, None) and self._tell_requester(row.id)
        finally:
            if announced:
                announcements.finish(row.id, token)
            else:
                announcements.release(row.id, token)
                log.warning("the end of request %s was not announced in full; the next sweep tries again", row.id)
        try:
            self.refresh_homes(self._services.approvals.get(row.id))
        except Exception:  # homes are drawn again when opened; the end itself was announced
            log.exception("could not refresh the homes after request %s ended", row.id)
        return announced

    def _tell_requester(self, request_id: str) -> bool:
        """Whether the requester got the notice (or never can)."""
        row = self._services.approvals.get(request_id)
        try:
            self._client.chat_postMessage(
                channel=row.requester, text=approval_card.card_text(row), blocks=approval_card.requester_notice(row)
            )
        except SLACK_FAILURES as exc:
            log.error("could not tell the requester of %s: %s", row.id, why_failed(exc))
            return _lasting(exc)
        return True

    def post_alert(self, alert: AlertRow) -> None:
        """A change seen outside recbot, to where approval cards go; posted by whoever opened the alert."""
        blocks = partial(drift_card.card, alert, self._services.sealer)
        cards = self._post(self._destinations(), drift_card.card_text(alert), blocks, f"drift alert {alert.id}")
        self._services.store.drift.set_alert_cards(alert.id, cards)
        self.refresh_alert(alert.id, shown=alert.version)

    def refresh_alert(self, alert_id: str, shown: int | None = None) -> None:
        """Write the alert's cards from its row as it is now, until it stops moving; then every home."""
        for _ in range(MAX_CARD_PASSES):
            alert = self._services.store.drift.alert(alert_id)
            if alert is None or alert.version == shown:
                break
            for ref in alert.cards:
                try:
                    self._client.chat_update(
                        channel=ref.channel,
                        ts=ref.ts,
                        text=drift_card.card_text(alert),
                        blocks=drift_card.card(alert, self._services.sealer, ref.channel),
                    )
                except SLACK_FAILURES as exc:
                    log.error("could not update a card of drift alert %s: %s", alert_id, why_failed(exc))
            shown = alert.version
        self.refresh_homes()

    def refresh_homes(self, row: RequestRow | None = None) -> None:
        """Publish again the home of everyone who opened it and whom `row` concerns
        (its requester, approvers, decider); with no row, everyone's."""
        lookup = GroupLookup(self._client)
        for user in self._services.store.homes.all():
            concerned = row is None or user in (row.requester, row.decided_by, *row.approvers)
            if concerned or self._services.approvers.includes(user, lookup):  # what waits for them changed
                self.publish_home(user)

    def publish_home(self, user: str, notice: str | None = None, kind: str = "info") -> None:
        """The App Home of `user` as it is now (approvers also see what waits for them), under
        `notice` (mrkdwn) marked as `kind` (see home.home_view)."""
        services = self._services
        is_approver = services.approvers.includes(user, GroupLookup(self._client))
        rows = services.approvals.open_requests()
        waiting = [r for r in rows if r.state == "pending" and r.requester != user and user not in r.approvers]
        content = home.HomeContent(
            waiting=waiting if is_approver else None,
            own=[r for r in rows if r.requester == user],
            alerts=services.store.drift.open_alerts(),
            latest=services.store.audit.latest(10),
            required=services.approvals.required_approvals,
            paused=services.switches.book.paused_or_unknown(),
            pause_needs_approval=services.switches.needs_approval,
            streams=services.store.switches.stream_tasks(),
            jobs=job_control(services).overview(),
        )
        try:
            self._client.views_publish(user_id=user, view=home.home_view(content, services.sealer, notice, kind))
        except SLACK_FAILURES as exc:
            log.error("could not publish the home of %s: %s", user, why_failed(exc))
            if notice is not None:  # the answer to something they did there: told directly instead
                self.tell(user, f"{home.notice_icon(kind)} {notice}")

    def tell(self, user: str, text: str) -> None:
        try:
            self._client.chat_postMessage(channel=user, text=text)
        except SLACK_FAILURES as exc:
            log.error("could not message %s: %s", user, why_failed(exc))

    def approvals_line(self, row: RequestRow) -> str:
        return f"{len(row.approvers)} of {self._services.approvals.required_approvals} approvals"

    def _card(self, row: RequestRow, channel: str) -> list[dict]:
        resumes = None
        if row.kind == "config" and row.state == "pending":  # applying it would switch recording on
            known = self._services.switches.book.known(row.target.app_id, row.target.entry_point)
            resumes = switch_blocks.resumes_warning(known)
        required = self._services.approvals.required_approvals
        return approval_card.card(row, self._services.sealer, required, channel, resumes)


def job_control(services: Services, clock: Callable[[], datetime] = utcnow) -> JobControl:
    """People's moves on fleet-wide jobs, on this process's store and settings."""
    ttl = services.settings.RECBOT_REQUEST_TTL_SECONDS
    return JobControl(services.store.jobs, services.store.job_progress, ttl_seconds=ttl, clock=clock)


# Slack errors saying the app or the workspace does not let recbot send someone a file.
FILE_REFUSALS = frozenset(
    {
        "missing_scope",
        "not_allowed_token_type",
        "restricted_action",
        "no_permission",
        "file_uploads_disabled",
        "file_uploads_except_images_disabled",
        "channel_not_found",
        "cannot_dm_bot",
        "user_disabled",
        "invalid_auth",
        "not_authed",
        "account_inactive",
    }
)


def file_not_taken(exc: Exception, otherwise: str = "try again in a minute.") -> str:
    """What a person is told when Slack did not take a file recbot sent them: a refusal that
    trying again cannot mend is said to be one, with what to check; else `otherwise`, what to do."""
    code = why_failed(exc)
    if isinstance(exc, SlackApiError) and code in FILE_REFUSALS:
        return (
            f"Slack refused the file ({code}); trying again will not help. Ask whoever runs recbot to check that "
            "the app has the files:write and im:write scopes (app.yaml) and that the workspace lets apps send files."
        )
    return f"Slack did not take the file ({code}); {otherwise}"


def _lasting(exc: Exception) -> bool:
    """Whether a Slack failure will be the same if tried again later."""
    return isinstance(exc, SlackApiError) and exc.response.get("error") in LASTING_ERRORS


def why_failed(exc: Exception) -> str:
    """Slack's error code, or the kind of failure; never a payload."""
    return str(exc.response.get("error")) if isinstance(exc, SlackApiError) else type(exc).__name__
