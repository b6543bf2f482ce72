"""Events API listeners: the App Home."""

from __future__ import annotations

from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot.services import Services
from handlers.notify import Notifier


def register(app: App, services: Services) -> None:
    @app.event("app_home_opened")
    def home_opened(event: dict[str, Any], client: WebClient) -> None:
        """Show the home as it is now, and remember to refresh it when what it shows changes."""
        if event.get("tab", "home") != "home":
            return  # the Messages tab
        user = event["user"]
        services.store.homes.add(user)
        Notifier(client, services).publish_home(user)
