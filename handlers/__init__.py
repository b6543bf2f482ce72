"""Slack listeners, grouped by kind; `register` wires them all into a Bolt app."""

from __future__ import annotations

from slack_bolt import App

from bot.services import Services
from handlers import actions, bulk, commands, errors, events, jobs, switch, views


def register(app: App, services: Services) -> None:
    commands.register(app, services)
    actions.register(app, services)
    actions.register_fleet(app, services)
    actions.register_picker(app, services)
    actions.register_drift(app, services)
    actions.register_home(app, services)
    events.register(app, services)
    views.register(app, services)
    switch.register(app, services)
    jobs.register(app, services)
    bulk.register(app, services)
    errors.register(app, services)
