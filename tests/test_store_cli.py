"""What `./run migrate`, `./run doctor` and a start say about the store, as a new user meets them:
`--sql` creates and writes nothing, and says in one line when it cannot print an upgrade;
doctor says what a start would do with the seal key, the revision and a read-only file; every
problem is one line with what to do; a second recbot on one SQLite file is refused."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from bot.models import Target
from bot.seal import Sealer
from bot.store import migrations, open_store
from bot.store.engine import make_engine
from bot.store.values import utcnow
from tests.conftest import POSTGRES_URL
from tests.legacy_schema import LAYOUTS, build
from tests.test_budget_instances import start_process
from tests.test_doctor import cli, run_doctor
from tests.test_startup import refused as refused_start

HTTP = ["--http", "--host", "127.0.0.1", "--port", "0"]
DOCTOR = ["doctor", *HTTP]
# The default dialect's SQLite file holds nothing but what these tests make.


@pytest.fixture
def env(settings_overrides: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in settings_overrides.items()}


@pytest.fixture
def database(settings_overrides: dict[str, Any]) -> Path:
    return Path(settings_overrides["DATABASE_URL"].removeprefix("sqlite:///"))


def one_line(done: subprocess.CompletedProcess[str], starts: str) -> str:
    """The one line of stderr a refused command prints (exit code 2), never a traceback."""
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith(starts), done.stderr[-3000:]
    return lines[0]


def database_line(done: subprocess.CompletedProcess[str]) -> str:
    (line,) = [line for line in done.stdout.splitlines() if "Database:" in line]
    return line


def set_revision(url: str, *values: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM alembic_version"))
        for value in values:
            conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": value})
    engine.dispose()


# 1: `--sql` touches nothing; `migrate` makes the seal key as a start would; doctor says what a start would do.


def test_migrate_sql_creates_nothing_and_migrate_leaves_what_doctor_passes(env, database, tmp_path) -> None:
    printed = cli(["migrate", "--sql"], tmp_path, env)
    assert printed.returncode == 0, printed.stderr
    assert "CREATE TABLE change_requests" in printed.stdout and "CREATE TABLE jobs" in printed.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "--sql created a file"
    done = cli(["migrate"], tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert f"made the seal key {database}.key (mode 0600)" in done.stdout and "separately" in done.stdout
    assert Path(f"{database}.key").exists()
    assert database_line(cli(DOCTOR, tmp_path, env)).startswith("[ok]")


def test_doctor_on_a_missing_key_says_what_a_start_does(settings_overrides, slack, agora, database) -> None:
    open_store(settings_overrides["DATABASE_URL"]).close()  # no key made
    code, checks = run_doctor(settings_overrides)
    assert checks["Database"].startswith("ok") and checks["Database"].endswith(
        f"the seal key {database}.key does not exist, and nothing is sealed yet: a start makes it"
    )
    engine = make_engine(settings_overrides["DATABASE_URL"])
    build(engine, "v7")  # two requests, one of them open with its patch sealed
    engine.dispose()
    code, checks = run_doctor(settings_overrides)
    assert code == 1 and checks["Database"] == f"FAIL: a start would refuse: {MISSING_KEY.format(database=database)}"


def test_doctor_fails_a_seal_key_that_cannot_open_what_is_sealed(settings_overrides, slack, agora, tmp_path) -> None:
    """Two instances with different keys: one's approval buttons read as forged on the other, and
    requests sealed by one can never be applied by the other. Doctor said ok."""
    first, second = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    store = open_store(settings_overrides["DATABASE_URL"])
    store.requests.create(
        request_id="r1",
        target=Target(app_id="A", entry_point="live", region="na"),
        requester="UALICE",
        expires_at=utcnow() + timedelta(hours=1),
        base_digest="d" * 32,
        sealed_patch=Sealer(first.encode()).seal("{}"),
        changes=[],
    )
    store.close()
    code, checks = run_doctor({**settings_overrides, "RECBOT_SEAL_KEY": second})
    assert code == 1 and checks["Database"] == (
        "FAIL: open requests or jobs in it were sealed with another key than RECBOT_SEAL_KEY: they could not be "
        "applied, and approval buttons made with that key read as forged; give every instance the key that sealed "
        "them (one RECBOT_SEAL_KEY for all), or restore its key file"
    )
    assert second not in str(checks) and first not in str(checks)
    code, checks = run_doctor({**settings_overrides, "RECBOT_SEAL_KEY": first})
    assert checks["Database"].startswith("ok")


MISSING_KEY = (
    "its seal key {database}.key is missing, and 1 open request(s) or job(s) are sealed with it: a new key could "
    "never open them; restore the key from its backup (if it is lost for good, set RECBOT_SEAL_KEY to a new key: "
    "those can then never be applied, so cancel them)"
)


def test_a_database_restored_without_its_key_is_refused_by_migrate_and_a_start(env, database, tmp_path, slack):
    """They made a new key: the open request could never be applied, and doctor then said ok."""
    engine = make_engine(env["DATABASE_URL"])
    build(engine, "v7")  # two requests, one of them open with its patch sealed
    engine.dispose()
    said = MISSING_KEY.format(database=database)
    assert one_line(cli(["migrate"], tmp_path, env), "recbot cannot migrate: ") == f"recbot cannot migrate: {said}"
    (line,) = refused_start(["--http", "--host", "127.0.0.1", "--port", "0"], env, tmp_path)
    assert line == f"recbot cannot start: {said}"
    assert not Path(f"{database}.key").exists()
    # The way out when the key is lost for good: a key of its own, with which the old request cannot be opened.
    done = cli(["migrate"], tmp_path, env | {"RECBOT_SEAL_KEY": Fernet.generate_key().decode()})
    assert done.returncode == 0 and "upgraded from" in done.stdout, done.stderr
    assert done.stderr == (  # said, not refused: a key of its own is the way out here
        "recbot migrate: warning: open requests or jobs in it were sealed with another key than RECBOT_SEAL_KEY: "
        "they could not be applied, and approval buttons made with that key read as forged; give every instance "
        "the key that sealed them (one RECBOT_SEAL_KEY for all), or restore its key file; if that key is lost for "
        "good, cancel them\n"
    )


# 2 and 6: a revision recbot cannot upgrade from is one line with what to do, everywhere; values escaped.


@pytest.fixture(params=["sqlite", "postgresql"])
def any_env(request: pytest.FixtureRequest, env: dict[str, str]) -> dict[str, str]:
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        return env | {"DATABASE_URL": url, "RECBOT_SEAL_KEY": Fernet.generate_key().decode()}
    return env


def test_a_revision_recbot_cannot_upgrade_from_is_one_line_in_every_command(any_env, tmp_path) -> None:
    url = any_env["DATABASE_URL"]
    open_store(url).close()
    set_revision(url, "0099")
    for args in (["migrate"], ["migrate", "--sql"]):
        line = one_line(cli(args, tmp_path, any_env), "recbot cannot migrate: the database is at revision 0099")
        assert line.endswith("run that recbot, or restore the backup taken before that upgrade"), line
    assert "restore the backup" in database_line(cli(DOCTOR, tmp_path, any_env))
    set_revision(url, "0009", "0010")
    said = "the database's alembic_version holds 2 revisions (0009, 0010) where recbot keeps one"
    for args, refused in ((["migrate"], "migrate"), (["migrate", "--sql"], "migrate"), (HTTP, "start")):
        one_line(cli(args, tmp_path, any_env), f"recbot cannot {refused}: {said}")
    assert database_line(cli(DOCTOR, tmp_path, any_env)).startswith(f"[FAIL] Database: {said}")
    for junk in ("x:y@z", "head", "0009+1"):
        set_revision(url, junk)
        line = one_line(cli(["migrate", "--sql"], tmp_path, any_env), "recbot cannot migrate: the database is at")
        assert f"revision {migrations.shown(junk)}, which this recbot does not know" in line


def test_a_revision_value_cannot_forge_a_line_of_doctors_output(env, tmp_path) -> None:
    open_store(env["DATABASE_URL"]).close()
    set_revision(env["DATABASE_URL"], "fine\n[ok]   Database: fine")
    done = cli(DOCTOR, tmp_path, env)
    assert not any(line.startswith("[ok]   Database") for line in done.stdout.splitlines()), done.stdout
    assert "revision 'fine\\n[ok]   Database: fine'" in database_line(done)


# 3: a read-only file or folder is refused by doctor and a start, in one line.


def as_user(args: list[str]) -> list[str]:
    """Root reads and writes whatever the modes say: as root, run without that privilege."""
    if os.geteuid() != 0:
        return args
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: a read-only file is writable")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", "--", *args]


def cli_as_user(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AGORA_", "RECBOT_", "DATABASE_"))}
    command = as_user([sys.executable, "-m", "recbot", *args])
    root = str(Path(__file__).resolve().parent.parent)
    return subprocess.run(command, cwd=cwd, env=base | env | {"PYTHONPATH": root}, capture_output=True, text=True)


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "ro"
    folder.mkdir()
    yield folder
    for path in (folder, *folder.iterdir()):
        path.chmod(0o755)


def test_a_read_only_sqlite_file_or_folder_is_refused_by_doctor_and_start(env, read_only, tmp_path) -> None:
    url = f"sqlite:///{read_only / 'recbot.db'}"
    env = env | {"DATABASE_URL": url, "RECBOT_SEAL_KEY": Fernet.generate_key().decode()}
    read_only.chmod(0o555)  # no file yet, and none can be made
    said = f"the folder {read_only} is read-only to recbot"
    assert database_line(cli_as_user(DOCTOR, tmp_path, env)).startswith(f"[FAIL] Database: {said}")
    one_line(cli_as_user(HTTP, tmp_path, env), f"recbot cannot start: {said}")
    read_only.chmod(0o755)
    open_store(url).close()
    (read_only / "recbot.db").chmod(0o444)
    said = f"the SQLite file {read_only / 'recbot.db'} is read-only to recbot"
    assert database_line(cli_as_user(DOCTOR, tmp_path, env)).startswith(f"[FAIL] Database: {said}")
    one_line(cli_as_user(HTTP, tmp_path, env), f"recbot cannot start: {said}")


# 4: the SQL printed for a database made before Alembic applies, or `--sql` refuses in one line.


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_the_printed_sql_of_an_upgrade_from_before_alembic_applies_or_is_refused(env, tmp_path, layout) -> None:
    url = env["DATABASE_URL"]
    engine = make_engine(url)
    build(engine, layout)
    engine.dispose()
    printed = cli(["migrate", "--sql"], tmp_path, env)
    if layout == "v5-switches-first":
        line = one_line(printed, "recbot cannot migrate: the SQL of this upgrade cannot be printed")
        assert "change_requests.kind" in line and "`./run migrate` on a copy" in line
        return
    assert printed.returncode == 0, printed.stderr
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as dba:
        dba.executescript(printed.stdout)
    engine = make_engine(url)
    with engine.connect() as conn:
        assert migrations.position(conn) == migrations.Position(migrations.head())
    engine.dispose()


# 5: a database recbot cannot tell the revision of, or that does not exist, says what to fix.


def test_recbots_tables_without_a_revision_are_refused_saying_so(
    settings_overrides, slack, agora, env, tmp_path
) -> None:
    open_store(env["DATABASE_URL"]).close()
    engine = make_engine(env["DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    engine.dispose()
    said = "the database holds recbot's tables (agora_budget, approvals, audit_events, ...) but no alembic_version"
    _, checks = run_doctor(settings_overrides)
    assert checks["Database"].startswith(f"FAIL: {said}") and "restore the backup" in checks["Database"]
    one_line(cli(["migrate"], tmp_path, env), f"recbot cannot migrate: {said}")


def test_a_postgresql_database_that_does_not_exist_is_named(env, postgres_url, tmp_path) -> None:
    server = postgres_url.split("?")[0].rsplit("/", 1)[0]
    env = env | {"DATABASE_URL": f"{server}/recbot_nowhere", "RECBOT_SEAL_KEY": Fernet.generate_key().decode()}
    line = one_line(cli(["migrate"], tmp_path, env), "recbot cannot migrate: the database 'recbot_nowhere' does not")
    assert line.endswith("create it (e.g. createdb), or change DATABASE_URL")


@pytest.fixture
def stranger(postgres_url: str) -> Iterator[str]:
    """A role that may log in and see the test's schema, but not create in it."""
    import psycopg

    name, schema = f"recbot_stranger_{uuid.uuid4().hex[:8]}", postgres_url.rsplit("%3D", 1)[1]
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{name}" LOGIN')
        admin.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'DROP OWNED BY "{name}"')
            admin.execute(f'DROP ROLE "{name}"')


def test_postgresqls_refusals_say_what_to_fix_not_that_the_server_may_be_down(
    env, postgres_url, stranger, tmp_path
) -> None:
    """They said "check DATABASE_URL and that the server is running", with the error's class name."""
    as_user = lambda user: postgres_url.replace("//postgres@", f"//{user}@", 1)  # noqa: E731
    key = {"RECBOT_SEAL_KEY": Fernet.generate_key().decode()}
    nowhere = postgres_url.split("?")[0] + "?options=-csearch_path%3Dno_such_schema"
    cases = {
        as_user("nobody_here"): "the role 'nobody_here' does not exist on the server of",
        as_user(stranger): "(InsufficientPrivilege): the user in DATABASE_URL may not create or write",
        nowhere: "(InvalidSchemaName): the schema recbot is to use",
    }
    for url, said in cases.items():
        line = one_line(cli(["migrate"], tmp_path, env | key | {"DATABASE_URL": url}), "recbot cannot migrate: ")
        assert said in line and "that the server is running" not in line, line
        # doctor said "ok ... a start applies 12 revision(s)" for the last two
        checked = database_line(cli(DOCTOR, tmp_path, env | key | {"DATABASE_URL": url}))
        assert checked.startswith("[FAIL] Database: ") and said in checked, checked


# 7: nothing to apply is said; options that do not apply are refused; a start logs no Alembic chatter.


def test_sql_at_the_head_says_there_is_nothing_to_apply(any_env, tmp_path) -> None:
    open_store(any_env["DATABASE_URL"]).close()
    printed = cli(["migrate", "--sql"], tmp_path, any_env)
    assert printed.stdout == f"-- nothing to apply: the database is at revision {migrations.head()}, the head\n"


@pytest.mark.parametrize("args", [["doctor", "--sql"], ["--sql"], ["run", "--sql"], ["migrate", "--http"]])
def test_options_that_do_not_apply_to_the_command_are_refused(env, tmp_path, args) -> None:
    done = cli(args, tmp_path, env)
    assert done.returncode == 2 and "usage: ./run" in done.stderr and "appl" in done.stderr.splitlines()[-1]
    assert not list(tmp_path.iterdir())


def test_migrate_refuses_a_port_it_would_ignore(env, tmp_path) -> None:
    done = cli(["migrate", "--http", "--port", "99999"], tmp_path, env)
    assert done.returncode == 2 and "do not apply to `migrate`" in done.stderr


# 8 and 12: one recbot per SQLite file; the seal key's log line says to back it up separately.


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(30)


def test_a_second_start_on_one_sqlite_file_is_refused_and_a_later_one_starts(env, tmp_path) -> None:
    first_dir, later_dir = tmp_path / "first", tmp_path / "later"
    first_dir.mkdir()
    later_dir.mkdir()
    first, _ = start_process(env, first_dir)
    try:
        log = (first_dir / "recbot.log").read_text()
        assert "back it up separately from the database" in log
        assert "Context impl" not in log and "Will assume" not in log and "upgraded the database from" in log
        line = one_line(cli(HTTP, tmp_path, env), "recbot cannot start: another recbot is running on the SQLite file")
        assert "PostgreSQL" in line
        one_line(cli(["migrate"], tmp_path, env), "recbot cannot migrate: another recbot is running")
    finally:
        stop(first)
    later, _ = start_process(env, later_dir)
    stop(later)
    assert later.returncode == 0, (later_dir / "recbot.log").read_text()[-3000:]


def test_doctor_warns_of_a_rate_limit_above_agoras(settings_overrides, slack, agora) -> None:
    _, checks = run_doctor({**settings_overrides, "AGORA_RATE_LIMIT": "60"})
    assert checks["Agora rate limit"].startswith(
        "warn: AGORA_RATE_LIMIT is 60 calls/s, but Agora allows an account about 50"
    )
    assert "429" in checks["Agora rate limit"]
    _, checks = run_doctor({**settings_overrides, "AGORA_RATE_LIMIT": "50"})
    assert "Agora rate limit" not in checks
