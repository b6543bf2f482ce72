"""`python -m bot doctor`: the first thing a new user runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError, SlackClientError

from bot.agora import AgoraError
from bot.app import agora_client, slack_client
from bot.models import Target
from bot.settings import Settings, SettingsError, load_settings
from bot.store import Store


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _slack(settings: Settings) -> Check:
    try:
        answer = slack_client(settings).auth_test()
    except SlackApiError as exc:
        return Check("Slack", False, f"auth.test said {exc.response.get('error')}: check SLACK_BOT_TOKEN")
    except (SlackClientError, OSError) as exc:
        return Check("Slack", False, f"cannot reach {settings.SLACK_API_URL}: {type(exc).__name__}")
    return Check("Slack", True, f"bot {answer.get('user')} in workspace {answer.get('team')}")


def _agora(settings: Settings) -> Check:
    client = agora_client(settings)
    target = Target(app_id=settings.AGORA_APP_ID, entry_point="live", region=settings.AGORA_DEFAULT_REGION)
    try:
        client.get_config(target)
    except AgoraError as exc:
        return Check("Agora", False, exc.user_message())
    finally:
        client.close()
    return Check("Agora", True, f"read entry point live in {target.region} of App ID {target.app_id}")


def _database(settings: Settings) -> Check:
    try:
        store = Store(settings.DATABASE_URL)
        store.ping()
        store.close()
    except Exception as exc:  # noqa: BLE001 - any failure here is the finding
        return Check("Database", False, f"{type(exc).__name__}: check DATABASE_URL")
    return Check("Database", True, "reachable, schema up to date")


def _approvals(settings: Settings) -> Check:
    if not settings.RECBOT_APPROVERS:
        return Check("Approvals", False, "RECBOT_APPROVERS is empty: storage changes could never be approved")
    where = settings.RECBOT_APPROVAL_CHANNEL or "each approver directly"
    count, needed = len(settings.RECBOT_APPROVERS), settings.RECBOT_REQUIRED_APPROVALS
    return Check("Approvals", True, f"{count} approver ID(s), {needed} needed, cards to {where}")


def run_checks(load: Callable[[], Settings] = load_settings) -> list[Check]:
    """Settings first; the rest only if the settings are usable."""
    try:
        settings = load()
    except SettingsError as exc:
        return [Check("Settings", False, str(exc))]
    return [
        Check("Settings", True, "all present and valid"),
        _approvals(settings),
        _slack(settings),
        _agora(settings),
        _database(settings),
    ]


def print_report(checks: list[Check]) -> int:
    """Print the checklist; the exit code is 1 if anything failed."""
    for check in checks:
        print(f"[{'ok' if check.ok else 'FAIL'}] {check.name}: {check.detail}")
    return 0 if all(c.ok for c in checks) else 1
