"""`python -m bot [--http [--port N]]` runs recbot; `python -m bot doctor` checks the setup."""

from __future__ import annotations

import argparse
import logging
import sys

from slack_sdk.errors import SlackApiError

from bot.app import build_services, create_app
from bot.doctor import print_report, run_checks
from bot.logs import configure_logging
from bot.seal import SealError
from bot.server import serve_http, serve_socket_mode
from bot.settings import Settings, SettingsError, load_settings

log = logging.getLogger("bot")


def known_secrets(settings: Settings) -> list[str]:
    """Values the redaction filter removes from every log line."""
    values = [settings.SLACK_BOT_TOKEN, settings.SLACK_SIGNING_SECRET, settings.AGORA_CUSTOMER_SECRET]
    values += [v for v in (settings.SLACK_APP_TOKEN, settings.RECBOT_SEAL_KEY) if v is not None]
    return [v.get_secret_value() for v in values]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="recbot, the recording chat-ops bot")
    parser.add_argument("command", nargs="?", choices=["run", "doctor"], default="run")
    parser.add_argument("--http", action="store_true", help="serve HTTP (POST /slack/events) instead of Socket Mode")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    configure_logging("text")

    if args.command == "doctor":
        return print_report(run_checks())
    try:
        settings = load_settings()
        if not args.http and settings.SLACK_APP_TOKEN is None:
            raise SettingsError(
                "recbot cannot start; fix these settings:\n  - SLACK_APP_TOKEN is missing "
                "(Socket Mode needs an App-Level Token, xapp-..., with connections:write; or run with --http)"
            )
        configure_logging(settings.RECBOT_LOG_FORMAT, known_secrets(settings))
        services = build_services(settings)
    except (SettingsError, SealError) as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        app = create_app(services)  # Bolt checks the bot token with auth.test here
    except (SlackApiError, OSError) as exc:
        detail = exc.response.get("error") if isinstance(exc, SlackApiError) else type(exc).__name__
        print(f"recbot cannot start: Slack's auth.test failed ({detail}). Run `./run doctor`.", file=sys.stderr)
        services.close()
        return 2
    if args.http:
        serve_http(app, services, args.host, args.port)
    else:
        serve_socket_mode(app, services)
    return 0


if __name__ == "__main__":
    sys.exit(main())
