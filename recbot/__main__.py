"""`python -m recbot [--http] [--host H] [--port N]` runs recbot; `python -m recbot doctor` checks
a start first; `python -m recbot migrate [--sql]` upgrades the database (or prints the SQL of it)."""

# ruff: noqa: E402 - the imports come after the Ctrl-C handler that covers their loading
from __future__ import annotations

import signal
import sys

STOPPED_WHILE_STARTING = "recbot stopped while starting (Ctrl-C): nothing was served, nothing is left half done"


def _stopped_while_loading(signum: int, frame: object) -> None:
    print(STOPPED_WHILE_STARTING, file=sys.stderr)
    raise SystemExit(130)


# Ctrl-C while the imports below load (a second or more) is one line too, not a traceback; a
# SIGINT the process was started ignoring (in the background) stays ignored.
_CTRL_C_HANDLED = __name__ == "__main__" and signal.getsignal(signal.SIGINT) is signal.default_int_handler
if _CTRL_C_HANDLED:
    signal.signal(signal.SIGINT, _stopped_while_loading)

import argparse
import logging
from typing import TextIO

from sqlalchemy.exc import SQLAlchemyError

from bot.doctor import doctor
from bot.logs import configure_logging
from bot.metrics_listener import METRICS_FIX, on_slack_port
from bot.seal import SealError, key_file_for, other_key, resolve_seal_key
from bot.server import (
    StartupError,
    cannot_listen,
    database_problem,
    listen_problems,
    socket_mode_url,
    verify_bot_token,
)
from bot.services import Services, build_services
from bot.settings import (
    DatabaseSettings,
    DatabaseUrlSettings,
    Mode,
    Settings,
    SettingsError,
    cleartext_upstreams,
    load_database_settings,
    load_database_url,
    load_settings,
    shown_database_url,
    sqlite_file_problem,
    unread_names,
)
from bot.store import a_sealed_value, count_sealed, migrations
from bot.store.engine import DatabaseInUse, make_engine, only_process, sqlite_path, sqlite_unwritable
from recbot.app import create_app
from recbot.serve import serve_http, serve_socket_mode


def known_secrets(settings: Settings) -> list[str]:
    """Values the redaction filter removes from every log line."""
    values = [settings.SLACK_BOT_TOKEN, settings.SLACK_SIGNING_SECRET, settings.AGORA_CUSTOMER_SECRET]
    values += [v for v in (settings.SLACK_APP_TOKEN, settings.RECBOT_SEAL_KEY) if v is not None]
    return [v.get_secret_value() for v in values]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; an option that does not apply to the command is refused, not ignored."""
    parser = argparse.ArgumentParser(prog="./run", description="recbot, the recording chat-ops bot")
    parser.add_argument("command", nargs="?", choices=["run", "doctor", "migrate"], default="run")
    parser.add_argument("--sql", action="store_true", help="migrate: print the SQL of the upgrade, apply nothing")
    parser.add_argument("--http", action="store_true", help="serve HTTP (POST /slack/events) instead of Socket Mode")
    parser.add_argument("--host", help="HTTP mode: the address to listen on (default 0.0.0.0)")
    # A string, checked with the settings, so that a bad port is one line like every other problem.
    parser.add_argument("--port", help="HTTP mode: the port to listen on (default 3000; 0: any free port, logged)")
    args = parser.parse_args(argv)
    if args.sql and args.command != "migrate":
        parser.error("--sql applies only to `migrate`")
    if args.command == "migrate" and (args.http or args.host is not None or args.port is not None):
        parser.error("--http, --host and --port do not apply to `migrate`, which serves nothing")
    args.host = "0.0.0.0" if args.host is None else args.host
    args.port = "3000" if args.port is None else args.port
    return args


def open_services(settings: Settings) -> Services:
    """The services, or StartupError naming what the seal key or database lacks."""
    try:
        return build_services(settings)
    except SealError as exc:
        raise StartupError(str(exc)) from None
    except migrations.UnknownRevision as exc:
        raise StartupError(str(exc)) from None
    except SQLAlchemyError as exc:
        raise StartupError(database_problem(settings.DATABASE_URL, exc)) from None


def start(mode: Mode, host: str, port: str) -> None:
    """Start and serve until stopped; StartupError says why a start is impossible.
    The settings, the listening address and Slack's tokens are checked before
    anything is created on disk."""
    settings: Settings | None = None
    problems = []
    unread = unread_names()
    try:
        settings = load_settings(mode)
    except SettingsError as exc:
        failing = {problem.split(" ", 1)[0] for problem in exc.problems}
        problems += exc.problems + [u.text for u in unread if u.meant in failing]  # a typo may be why
    problems += listen_problems(host, port)
    if mode == "http" and settings is not None and not problems:
        problems += [p for p in [on_slack_port(settings.RECBOT_METRICS_ADDR, host, int(port))] if p]
    if problems or settings is None:
        raise StartupError("\n".join(problems))
    configure_logging(settings.RECBOT_LOG_FORMAT, known_secrets(settings))
    for name in unread:
        logging.getLogger("recbot").warning("%s", name.text)
    for warning in cleartext_upstreams(settings):
        logging.getLogger("recbot").warning("%s", warning)
    if mode == "http":
        unusable = cannot_listen(host, int(port))
        if unusable:
            raise StartupError(unusable)
    if settings.RECBOT_METRICS_ADDR is not None:
        unusable = cannot_listen(*settings.RECBOT_METRICS_ADDR, port_fix=METRICS_FIX, host_fix=METRICS_FIX)
        if unusable:
            raise StartupError(unusable)
    # As doctor says it, before the key file is made.
    unusable = sqlite_file_problem(settings.DATABASE_URL) or sqlite_unwritable(settings.DATABASE_URL)
    if unusable:
        raise StartupError(unusable)
    verify_bot_token(settings)
    socket_url = ""
    if mode == "socket":
        assert settings.SLACK_APP_TOKEN is not None
        socket_url = socket_mode_url(settings.SLACK_APP_TOKEN.get_secret_value(), settings.SLACK_API_URL)
    try:
        with only_process(settings.DATABASE_URL):  # held until the process stops serving
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
    except DatabaseInUse as exc:
        raise StartupError(str(exc)) from None


# What migrate reads; a name one typo from these would leave it on another database (the default).
MIGRATE_READS = ("DATABASE_URL", "RECBOT_SEAL_KEY")


def migrate(sql: bool, out: TextIO) -> int:
    """Upgrade the database to the head revision before a rollout, making the seal key as a
    start would, or with `sql` print the SQL of that upgrade for a DBA to review, creating
    and writing nothing. Reads DATABASE_URL and RECBOT_SEAL_KEY alone (`sql`: DATABASE_URL),
    and refuses where a name one typo from them is set, or one of them twice in .env: which
    database is meant is then not sure. Every problem is one line on stderr (exit code 2); a seal
    key that does not open what is sealed is a warning there (a new key is the way out when the
    old one is lost for good)."""
    unsure = [u.text for u in unread_names() if u.meant in MIGRATE_READS]
    try:
        settings: DatabaseUrlSettings = load_database_url() if sql else load_database_settings()
    except SettingsError as exc:
        unsure = exc.problems + unsure
    for line in unsure:
        print(f"recbot cannot migrate: {line}", file=sys.stderr)
    if unsure:
        return 2
    try:
        if isinstance(settings, DatabaseSettings):
            return _migrate(settings, out)
        return _print_sql(settings, out)
    except (migrations.UnknownRevision, migrations.OfflineUnsafe, SealError, DatabaseInUse, StartupError) as exc:
        print(f"recbot cannot migrate: {exc}", file=sys.stderr)
    except SQLAlchemyError as exc:
        print(f"recbot cannot migrate: {database_problem(settings.DATABASE_URL, exc)}", file=sys.stderr)
    return 2


def _print_sql(settings: DatabaseUrlSettings, out: TextIO) -> int:
    """The SQL from where the database stands, read read-only; from the start if it does not exist yet."""
    unusable = sqlite_file_problem(settings.DATABASE_URL)
    if unusable:
        raise StartupError(unusable)
    engine = make_engine(settings.DATABASE_URL, read_only=True)
    path = sqlite_path(settings.DATABASE_URL)
    try:
        migrations.upgrade_sql(None if path and not path.exists() else engine, engine.dialect.name, out)
    finally:
        engine.dispose()
    return 0


def _migrate(settings: DatabaseSettings, out: TextIO) -> int:
    unusable = sqlite_file_problem(settings.DATABASE_URL) or sqlite_unwritable(settings.DATABASE_URL)
    if unusable:
        raise StartupError(unusable)
    with only_process(settings.DATABASE_URL):  # not under a running recbot on the embedded SQLite
        key = key_file_for(settings.DATABASE_URL)
        made = settings.RECBOT_SEAL_KEY is None and key is not None and not key.exists()
        configured = settings.RECBOT_SEAL_KEY.get_secret_value() if settings.RECBOT_SEAL_KEY else None
        # As a start would: doctor then finds the pair.
        sealing = resolve_seal_key(configured, settings.DATABASE_URL, lambda: count_sealed(settings.DATABASE_URL))
        engine = make_engine(settings.DATABASE_URL)
        try:
            with engine.connect() as conn:
                before = migrations.position(conn)
                sample = a_sealed_value(conn)
            wrong = other_key(sealing, configured is not None, settings.DATABASE_URL, sample) if sample else None
            migrations.upgrade(engine)
        finally:
            engine.dispose()
    head = migrations.head()
    done = "already at" if before.revision == head else f"upgraded from {before.describe()} to"
    print(f"{shown_database_url(settings.DATABASE_URL)}: {done} revision {head}", file=out)
    if made:
        print(f"made the seal key {key} (mode 0600): back it up, separately from the database", file=out)
    if wrong:  # not refused: a new key is the way out when the old one is lost for good (bot/seal.py)
        print(f"recbot migrate: warning: {wrong}; if that key is lost for good, cancel them", file=sys.stderr)
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
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines are chatter; recbot logs the upgrade
    try:
        start(mode, args.host, args.port)
    except StartupError as exc:
        for line in str(exc).splitlines():
            print(f"recbot cannot start: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before the start got far enough to stop cleanly (recbot/serve.py)
        print(STOPPED_WHILE_STARTING, file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    if _CTRL_C_HANDLED:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # loaded: Ctrl-C is a KeyboardInterrupt again
    sys.exit(main())
