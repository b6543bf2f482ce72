"""What the Slack listeners work with: the settings and the domain services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from bot.access import Audience
from bot.agora import AgoraClient
from bot.approvals import ApprovalService
from bot.changes import ChangeService
from bot.drift import DriftWatch
from bot.fleet import Fleet
from bot.models import RecordingConfig, Target
from bot.probe import Prober
from bot.seal import Sealer
from bot.settings import Settings
from bot.store import Store
from bot.switching import SwitchService


@dataclass
class Services:
    settings: Settings
    agora: AgoraClient
    sealer: Sealer
    store: Store
    changes: ChangeService
    approvals: ApprovalService
    approvers: Audience
    requesters: Audience
    prober: Prober
    fleet: Fleet
    drift: DriftWatch
    switches: SwitchService

    def read_config(self, target: Target) -> RecordingConfig:
        """The live configuration (AgoraError if unreadable); a target read for the first time is remembered."""
        config = self.agora.get_config(target)
        self.drift.saw(target, config)
        return config

    def channel_allowed(self, channel_id: str) -> bool:
        allowed = self.settings.RECBOT_ALLOWED_CHANNELS
        return not allowed or channel_id in allowed

    def health(self) -> dict[str, Any]:
        """What `/healthz` reports: whether the database answers."""
        try:
            self.store.ping()
        except SQLAlchemyError:
            return {"ok": False, "database": "unreachable"}
        return {"ok": True, "database": "ok"}

    def close(self) -> None:
        self.agora.close()
        self.store.close()
