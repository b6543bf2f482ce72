"""Settings errors list every problem without echoing secrets; doctor checks the setup."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.doctor import print_report, run_checks
from bot.settings import SettingsError, load_settings
from tests.conftest import CUSTOMER_SECRET

ROOT = Path(__file__).resolve().parent.parent


def test_every_problem_listed_once_with_how_to_fix() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(
            _env_file=None, SLACK_BOT_TOKEN="xoxb-secret-value", AGORA_DEFAULT_REGION="mars", AGORA_APP_ID="a/b c"
        )
    message = str(caught.value)
    for name in (
        "SLACK_SIGNING_SECRET",
        "AGORA_CUSTOMER_ID",
        "AGORA_CUSTOMER_SECRET",
        "AGORA_DEFAULT_REGION",
        "AGORA_APP_ID",
    ):
        assert message.count(name) == 1
    assert "Signing Secret" in message and "cn, ap, na, eu" in message
    assert "xoxb-secret-value" not in message and "SLACK_BOT_TOKEN" not in message


def test_invalid_secret_value_is_never_printed() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None, RECBOT_REQUIRED_APPROVALS="0", AGORA_CUSTOMER_SECRET=CUSTOMER_SECRET)
    assert CUSTOMER_SECRET not in str(caught.value)


def test_defaults_and_lists(settings_overrides) -> None:
    settings = load_settings(_env_file=None, **{**settings_overrides, "RECBOT_APPROVERS": "U1, S2 ,"})
    assert settings.RECBOT_APPROVERS == ("U1", "S2")
    assert settings.RECBOT_REQUEST_TTL_SECONDS == 86400 and settings.RECBOT_APPROVAL_FOR == "secrets"
    assert CUSTOMER_SECRET not in repr(settings)


def test_doctor_all_green(settings, slack, agora, capsys) -> None:
    checks = run_checks(lambda: settings)
    assert [(c.name, c.ok) for c in checks] == [
        ("Settings", True),
        ("Approvals", True),
        ("Slack", True),
        ("Agora", True),
        ("Database", True),
    ]
    assert print_report(checks) == 0
    assert "[ok] Agora" in capsys.readouterr().out


def test_doctor_names_the_failing_part(settings, agora) -> None:
    agora.customer_secret = "rotated"
    checks = {c.name: c for c in run_checks(lambda: settings)}
    assert not checks["Agora"].ok and "AGORA_CUSTOMER_SECRET" in checks["Agora"].detail
    assert checks["Slack"].ok and checks["Database"].ok
    assert print_report(list(checks.values())) == 1


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m bot ARGS` with none of recbot's settings in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AGORA_", "RECBOT_", "DATABASE_"))}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_doctor_fails_when_nobody_can_approve(settings_overrides, slack, agora) -> None:
    lonely = load_settings(_env_file=None, **{**settings_overrides, "RECBOT_APPROVERS": ""})
    checks = {c.name: c for c in run_checks(lambda: lonely)}
    assert not checks["Approvals"].ok and "could never be approved" in checks["Approvals"].detail


def test_doctor_command_exits_nonzero_on_missing_settings(tmp_path) -> None:
    done = run_cli(["doctor"], tmp_path)
    assert done.returncode == 1
    assert "[FAIL] Settings" in done.stdout and "SLACK_BOT_TOKEN is missing" in done.stdout


def test_run_refuses_to_start_without_settings(tmp_path) -> None:
    done = run_cli([], tmp_path)
    assert done.returncode == 2
    assert "AGORA_CUSTOMER_SECRET is missing" in done.stderr
