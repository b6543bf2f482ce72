"""What the Slack listeners work with: the settings and the domain services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from bot.agora import AgoraClient
from bot.changes import ChangeService
from bot.seal import Sealer
from bot.settings import Settings
from bot.store import Store


@dataclass
class Services:
    settings: Settings
    agora: AgoraClient
    sealer: Sealer
    store: Store
    changes: ChangeService

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
