"""`python -m bot [--http [--port N]]` runs recbot; `python -m bot doctor` checks the setup."""

from __future__ import annotations

import argparse
import logging
import sys

from bot.app import build_services, create_app
from bot.doctor import print_report, run_checks
from bot.seal import SealError
from bot.server import make_http_server, socket_mode_handler
from bot.settings import SettingsError, load_settings

log = logging.getLogger("bot")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="recbot, the recording chat-ops bot")
    parser.add_argument("command", nargs="?", choices=["run", "doctor"], default="run")
    parser.add_argument("--http", action="store_true", help="serve HTTP (POST /slack/events) instead of Socket Mode")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.command == "doctor":
        return print_report(run_checks())
    try:
        settings = load_settings()
        if not args.http and settings.SLACK_APP_TOKEN is None:
            raise SettingsError(
                "recbot cannot start; fix these settings:\n  - SLACK_APP_TOKEN is missing "
                "(Socket Mode needs an App-Level Token, xapp-..., with connections:write; or run with --http)"
            )
        services = build_services(settings)
    except (SettingsError, SealError) as exc:
        print(exc, file=sys.stderr)
        return 2
    app = create_app(services)
    if args.http:
        server = make_http_server(app, services.health, args.host, args.port)
        log.info("recbot serving HTTP on %s:%d (POST /slack/events, GET /healthz)", args.host, args.port)
        server.run()
    else:
        assert settings.SLACK_APP_TOKEN is not None
        log.info("recbot connecting in Socket Mode")
        socket_mode_handler(app, settings.SLACK_APP_TOKEN.get_secret_value(), settings.SLACK_API_URL).start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
