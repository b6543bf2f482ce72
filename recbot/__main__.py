"""`python -m recbot [--http] [--host H] [--port N]` runs recbot; `python -m recbot doctor` checks
a start first; `python -m recbot migrate [--sql]` upgrades the database (or prints the SQL of it)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TextIO

from sqlalchemy.exc import SQLAlchemyError

from bot.doctor import doctor
from bot.logs import configure_logging
from bot.seal import SealError
from bot.server import StartupError, cannot_listen, listen_problems, socket_mode_url, verify_bot_token
from bot.services import Services, build_services
from bot.settings import (
    Mode,
    Settings,
    SettingsError,
    database_unusable,
    load_settings,
    shown_database_url,
    sqlite_file_problem,
)
from bot.store import migrations
from bot.store.engine import make_engine
from recbot.app import create_app
from recbot.serve import serve_http, serve_socket_mode


def known_secrets(settings: Settings) -> list[str]:
    """Values the redaction filter removes from every log line."""
    values = [settings.SLACK_BOT_TOKEN, settings.SLACK_SIGNING_SECRET, settings.AGORA_CUSTOMER_SECRET]
    values += [v for v in (settings.SLACK_APP_TOKEN, settings.RECBOT_SEAL_KEY) if v is not None]
    return [v.get_secret_value() for v in values]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="./run", description="recbot, the recording chat-ops bot")
    parser.add_argument("command", nargs="?", choices=["run", "doctor", "migrate"], default="run")
    parser.add_argument("--sql", action="store_true", help="migrate: print the SQL of the upgrade, apply nothing")
    parser.add_argument("--http", action="store_true", help="serve HTTP (POST /slack/events) instead of Socket Mode")
    parser.add_argument("--host", default="0.0.0.0", help="HTTP mode: the address to listen on (default 0.0.0.0)")
    # A string, checked with the settings, so that a bad port is one line like every other problem.
    parser.add_argument(
        "--port", default="3000", help="HTTP mode: the port to listen on (default 3000; 0: any free port, logged)"
    )
    return parser.parse_args(argv)


def open_services(settings: Settings) -> Services:
    """The services, or StartupError naming what the seal key or database lacks."""
    try:
        return build_services(settings)
    except SealError as exc:
        raise StartupError(str(exc)) from None
    except migrations.UnknownRevision as exc:
        raise StartupError(f"the database is at {exc}: run the newer recbot that upgraded it") from None
    except SQLAlchemyError as exc:
        reason = type(getattr(exc, "orig", None) or exc).__name__
        raise StartupError(database_unusable(settings.DATABASE_URL, reason)) from None


def start(mode: Mode, host: str, port: str) -> None:
    """Start and serve until stopped; StartupError says why a start is impossible.
    The settings, the listening address and Slack's tokens are checked before
    anything is created on disk."""
    settings: Settings | None = None
    problems = []
    try:
        settings = load_settings(mode)
    except SettingsError as exc:
        problems += exc.problems
    problems += listen_problems(host, port)
    if problems or settings is None:
        raise StartupError("\n".join(problems))
    configure_logging(settings.RECBOT_LOG_FORMAT, known_secrets(settings))
    if mode == "http":
        unusable = cannot_listen(host, int(port))
        if unusable:
            raise StartupError(unusable)
    unusable = sqlite_file_problem(settings.DATABASE_URL)  # as doctor says it, before the key file is made
    if unusable:
        raise StartupError(unusable)
    verify_bot_token(settings)
    socket_url = ""
    if mode == "socket":
        assert settings.SLACK_APP_TOKEN is not None
        socket_url = socket_mode_url(settings.SLACK_APP_TOKEN.get_secret_value(), settings.SLACK_API_URL)
    services = open_services(settings)
    try:
        app = create_app(services)
        if mode == "http":
            serve_http(app, services, host, int(port))
        else:
            serve_socket_mode(app, services, socket_url)
    except StartupError:
        services.close()
        raise


def migrate(sql: bool, out: TextIO) -> int:
    """Upgrade the database to the head revision before a rollout (a start would do it too),
    or with `sql` print the SQL of that upgrade for a DBA to review, applying nothing."""
    try:
        settings = load_settings("http")
    except SettingsError as exc:
        for line in exc.problems:
            print(f"recbot cannot migrate: {line}", file=sys.stderr)
        return 2
    unusable = sqlite_file_problem(settings.DATABASE_URL)
    if unusable:
        print(f"recbot cannot migrate: {unusable}", file=sys.stderr)
        return 2
    shown = shown_database_url(settings.DATABASE_URL)
    engine = make_engine(settings.DATABASE_URL)
    try:
        if sql:
            migrations.upgrade_sql(engine, out)
            return 0
        with engine.connect() as conn:
            before = migrations.position(conn)
        migrations.upgrade(engine)
    except migrations.UnknownRevision as exc:
        print(
            f"recbot cannot migrate: the database is at {exc}: run the newer recbot that upgraded it", file=sys.stderr
        )
        return 2
    except SQLAlchemyError as exc:
        reason = type(getattr(exc, "orig", None) or exc).__name__
        print(f"recbot cannot migrate: {database_unusable(settings.DATABASE_URL, reason)}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    head = migrations.head()
    done = "already at" if before.revision == head else f"upgraded from {before.describe()} to"
    print(f"{shown}: {done} revision {head}", file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mode: Mode = "http" if args.http else "socket"
    if args.command == "migrate":
        logging.disable(logging.CRITICAL)  # what it did, or the SQL, is the output
        return migrate(args.sql, sys.stdout)
    if args.command == "doctor":
        logging.disable(logging.CRITICAL)  # the checklist is the output; no log line may interleave
        return doctor(mode, args.host, args.port, sys.stdout)
    configure_logging("text")
    try:
        start(mode, args.host, args.port)
    except StartupError as exc:
        for line in str(exc).splitlines():
            print(f"recbot cannot start: {line}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
