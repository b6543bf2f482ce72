"""The README and .env.example keep up with the code: every setting documented in
both, every file of the repository's own folders named in the README's Layout."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

from bot.commands import Verb
from bot.job_lifecycle import JOB_TRANSITIONS, TARGET_TRANSITIONS, job_mermaid, target_mermaid
from bot.lifecycle import TRANSITIONS, mermaid
from bot.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
FOLDERS = [
    "recbot",
    "bot",
    "bot/store",
    "bot/store/alembic",
    "bot/store/alembic/versions",
    "handlers",
    "handlers/blocks",
    "bench",
    "scripts",
]
TOP_LEVEL = ["run", "test", "app.yaml", ".env.example", ".ci/run", ".importlinter"]


def section(title: str) -> str:
    """The README's `## title` section, up to the next `## `."""
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def settings_table() -> list[str]:
    return re.findall(r"^\| `([A-Z_]+)` \|", section("Settings"), re.MULTILINE)


def test_the_readme_settings_table_has_every_setting_once() -> None:
    names = settings_table()
    assert sorted(names) == sorted(Settings.model_fields) and len(names) == len(set(names))


def test_the_readme_shows_the_life_cycle_table_as_it_is() -> None:
    shown = re.search(r"```mermaid\n(.*?)```", README, re.DOTALL)
    assert shown is not None and shown.group(1) == mermaid()
    edges = re.findall(r"^    (\w+) --> (\w+): (\w+)$", shown.group(1), re.MULTILINE)
    assert {(state, event): to for state, to, event in edges} == TRANSITIONS


def test_the_readme_shows_the_job_and_target_tables_as_they_are() -> None:
    shown = re.findall(r"```mermaid\n(.*?)```", README, re.DOTALL)
    assert shown[1:] == [job_mermaid(), target_mermaid()]
    for diagram, table in zip(shown[1:], [JOB_TRANSITIONS, TARGET_TRANSITIONS], strict=True):
        edges = re.findall(r"^    (\w+) --> (\w+): (\w+)$", diagram, re.MULTILINE)
        assert {(state, event): to for state, to, event in edges} == table


def test_env_example_documents_every_setting_and_sets_none() -> None:
    text = (ROOT / ".env.example").read_text()
    lines = text.splitlines()
    assert all(line == "" or line.startswith("#") for line in lines)  # copied as is, it sets nothing
    examples = re.findall(r"^# ([A-Z_]+)=", text, re.MULTILINE)
    assert sorted(examples) == sorted(Settings.model_fields) and len(examples) == len(set(examples))
    for block in text.split("\n\n"):
        named = re.findall(r"^# ([A-Z_]+)=", block, re.MULTILINE)
        if named:  # what it is, then its default or that it is required, then the example
            (name,) = named
            assert re.match(rf"# {name}[ :]", block), block
            assert "Default" in block or "required" in block, block


def layout() -> dict[str, set[str]]:
    """The Layout section's entries: `    folder/` lines, each followed by `      file` lines."""
    listed: dict[str, set[str]] = {}
    folder = None
    for line in section("Layout").splitlines():
        if re.match(r"^ {4}\S+/\s", line + " "):
            folder = line.split()[0].rstrip("/")
            listed.setdefault(folder, set())
        elif re.match(r"^ {6}\S", line) and folder is not None:
            listed[folder].add(line.split()[0])
    return listed


def files_in(folder: str) -> set[str]:
    return {p.name for p in (ROOT / folder).iterdir() if p.is_file() and p.suffix in (".py", ".sh", ".md")}


def test_the_layout_names_every_file_and_no_other() -> None:
    listed = layout()
    for folder in FOLDERS:
        assert listed.get(folder) == files_in(folder), folder
    assert listed["."] == set(TOP_LEVEL)
    assert all((ROOT / name).is_file() for name in TOP_LEVEL)
    executables = {p.name for p in ROOT.iterdir() if p.is_file() and p.stat().st_mode & 0o111}
    assert executables <= set(TOP_LEVEL)  # a new top-level script must be listed too


def test_the_readme_usage_lists_every_verb_the_bot_answers() -> None:
    usage = re.findall(r"^    /recording (\w+)", section("Using it"), re.MULTILINE)
    assert sorted(usage) == sorted(get_args(Verb)) and len(usage) == len(set(usage))
