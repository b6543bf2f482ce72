"""`app.yaml` against Slack's app-manifest schema, and against what the bot uses."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import get_args

import jsonschema
import pytest
import yaml

from bot.commands import USAGE, Verb

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "tests/data/slack_manifest.schema.v1.json").read_text())


def manifest() -> dict:
    return yaml.safe_load((ROOT / "app.yaml").read_text())


def test_manifest_validates_against_schema() -> None:
    jsonschema.validate(manifest(), SCHEMA)


def test_schema_is_strict_enough_to_catch_mistakes() -> None:
    broken = manifest()
    broken["features"]["slash_commands"][0]["command"] = "recording"  # no leading slash
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA)


def test_manifest_declares_what_the_bot_needs_and_no_more() -> None:
    data = manifest()
    assert [c["command"] for c in data["features"]["slash_commands"]] == ["/recording"]
    assert set(data["oauth_config"]["scopes"]["bot"]) == {
        "commands",
        "chat:write",
        "usergroups:read",
        "channels:read",
        "groups:read",
        "files:write",
        "im:write",
    }
    assert data["settings"]["interactivity"]["is_enabled"] is True
    assert data["settings"]["socket_mode_enabled"] is True
    assert "bot_user" in data["features"]
    assert data["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened"]
    assert data["features"]["app_home"]["home_tab_enabled"] is True


def test_the_http_mode_edit_the_readme_describes_is_valid() -> None:
    edited = manifest()
    edited["settings"]["socket_mode_enabled"] = False
    edited["features"]["slash_commands"][0]["url"] = "https://recbot.example.com/slack/events"
    edited["settings"]["interactivity"]["request_url"] = "https://recbot.example.com/slack/events"
    edited["settings"]["interactivity"]["message_menu_options_url"] = "https://recbot.example.com/slack/events"
    edited["settings"]["event_subscriptions"]["request_url"] = "https://recbot.example.com/slack/events"
    jsonschema.validate(edited, SCHEMA)
    readme = (ROOT / "README.md").read_text()
    assert "`url: https://YOUR-HOST/slack/events`" in readme
    assert "`request_url: https://YOUR-HOST/slack/events`" in readme
    assert "`message_menu_options_url: https://YOUR-HOST/slack/events`" in readme
    assert "`event_subscriptions.request_url: https://YOUR-HOST/slack/events`" in readme
    wrong = manifest()
    wrong["features"]["slash_commands"][0]["request_url"] = "https://recbot.example.com/slack/events"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(wrong, SCHEMA)  # the old README's edit


def hint_verbs(hint: str) -> set[str]:
    """`get|set|history <entry_point> ... | list [...] | pending | help` -> the verbs."""
    return {verb for alternative in hint.split(" | ") for verb in alternative.split()[0].split("|")}


def test_the_usage_hint_lists_the_verbs_the_bot_answers() -> None:
    (command,) = manifest()["features"]["slash_commands"]
    verbs = set(get_args(Verb))
    assert hint_verbs(command["usage_hint"]) == verbs
    assert set(re.findall(r"`/recording (\w+)", USAGE)) == verbs
    assert "list [cn|ap|na|eu|all]" in command["usage_hint"]
