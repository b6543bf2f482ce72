"""Parsing of the `/recording` command text into a typed command."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from bot.catalog import API_REGIONS
from bot.models import Target, check_path_segment

Verb = Literal["get", "set", "history", "pending", "list", "help", "pause", "resume", "stream", "jobs", "bulk"]
TARGETED: tuple[Verb, ...] = ("get", "set", "history")

USAGE = (
    "*Usage*\n"
    "• `/recording get [<entry_point> [region]] [--app APPID]`: show an entry point's recording configuration\n"
    "• `/recording set [<entry_point> [region]] [--app APPID]`: change it in a form (no entry point: pick one)\n"
    "• `/recording history <entry_point> [region] [--app APPID]`: the latest changes\n"
    "• `/recording list [region|all] [--app APPID]`: every entry point of the app at a glance\n"
    "• `/recording pause <entry_point> [--app APPID]`: stop custom recording of every stream (configuration kept)\n"
    "• `/recording resume <entry_point> [--app APPID]`: record every stream again\n"
    "• `/recording stream <entry_point> <region> <stream_name> on|off [--app APPID]`: record one stream "
    "(while paused) or stop it\n"
    "• `/recording bulk [--app APPID]`: one change to many entry points, planned first, approved once\n"
    "• `/recording pending`: open change requests\n"
    "• `/recording jobs`: fleet-wide jobs running and ended lately, with Pause, Resume and Cancel\n"
    "• `/recording help`: this text\n"
    f"`region` is one of {', '.join(API_REGIONS)}; the default entry point is called `live`."
)


class UsageError(ValueError):
    """The command text is not valid; the message says what is."""


@dataclass(frozen=True)
class Command:
    verb: Verb
    target: Target | None = None
    app_id: str | None = None  # list: the app whose fleet to show
    regions: tuple[str, ...] = ()  # list: the API regions to read
    stream: str | None = None  # stream: the stream's name
    enabled: bool | None = None  # pause, resume, stream: off or on


def as_typed(text: str) -> str:
    """A slash command's text as the person typed it: Slack sends `&`, `<` and `>` as `&amp;`,
    `&lt;` and `&gt;` (its formatting rules), so `a&b` arrives as `a&amp;b`. Undone once,
    `&amp;` last, so a typed `&lt;` stays `&lt;`."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def parse_command(text: str, *, default_app: str, default_region: str) -> Command:
    """Parse `/recording` text as Slack sends it (escaped); raise UsageError with a clear message if invalid."""
    words = as_typed(text).split()
    if not words or words[0].lower() == "help":
        return Command("help")
    verb, args = words[0].lower(), words[1:]
    if verb == "pending":
        if args:
            raise UsageError("`/recording pending` takes no arguments.")
        return Command("pending")
    if verb == "bulk":
        return _bulk_command(args, default_app)
    if verb == "jobs":
        if args:
            raise UsageError("`/recording jobs` takes no arguments.")
        return Command("jobs")
    if verb in ("pause", "resume"):
        return _switch_command("pause" if verb == "pause" else "resume", args, default_app)
    if verb == "stream":
        return _stream_command(args, default_app)
    if verb not in (*TARGETED, "list"):
        raise UsageError(f"Unknown subcommand `{verb[:40]}`.")
    app_id, positional = _options(args, default_app)
    if verb == "list":
        return _list_command(positional, app_id, default_region)
    if not positional and verb in ("get", "set"):
        try:
            check_path_segment(app_id, "App ID")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return Command("get" if verb == "get" else "set", app_id=app_id)  # no entry point: picked, not typed
    if not positional:
        raise UsageError(f"`/recording {verb}` needs an entry point, e.g. `/recording {verb} live na`.")
    if len(positional) > 2:
        raise UsageError(f"Too many arguments: `/recording {verb} <entry_point> [region] [--app APPID]`.")
    region = positional[1] if len(positional) == 2 else default_region
    try:
        target = Target(app_id=app_id, entry_point=positional[0], region=region)
    except ValidationError as exc:
        raise UsageError(" ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None
    return Command(verb, target)  # type: ignore[arg-type]


def _list_command(positional: list[str], app_id: str, default_region: str) -> Command:
    if len(positional) > 1:
        raise UsageError("Too many arguments: `/recording list [region|all] [--app APPID]`.")
    asked = positional[0] if positional else default_region
    if asked != "all" and asked not in API_REGIONS:
        raise UsageError(f"Region must be one of {', '.join(API_REGIONS)} or `all`, not `{asked[:16]}`.")
    try:
        check_path_segment(app_id, "App ID")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return Command("list", app_id=app_id, regions=tuple(API_REGIONS) if asked == "all" else (asked,))


def _bulk_command(args: list[str], default_app: str) -> Command:
    """`bulk [--app APPID]`: the modal names the rest."""
    app_id, positional = _options(args, default_app)
    if positional:
        raise UsageError(
            "`/recording bulk [--app APPID]` takes no other arguments: the form asks for the targets and the change."
        )
    try:
        check_path_segment(app_id, "App ID")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return Command("bulk", app_id=app_id)


def _switch_command(verb: Verb, args: list[str], default_app: str) -> Command:
    """`pause|resume <entry_point> [--app APPID]`: the switch is one per entry point, for every region."""
    app_id, positional = _options(args, default_app)
    if not positional:
        raise UsageError(f"`/recording {verb}` needs an entry point, e.g. `/recording {verb} live`.")
    if len(positional) > 1:
        got = " ".join(positional)[:60]
        raise UsageError(
            f"`/recording {verb}` takes one entry point, and got {len(positional)} words ({got}): "
            f"`/recording {verb} <entry_point> [--app APPID]`. The recording switch is one per entry point, for every "
            "region, so it takes no region either."
        )
    try:
        target = Target.every_region(app_id, positional[0])
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return Command(verb, target, enabled=verb == "resume")


def _stream_command(args: list[str], default_app: str) -> Command:
    """`stream <entry_point> <region> <stream_name> on|off [--app APPID]`."""
    app_id, positional = _options(args, default_app)
    shape = "`/recording stream <entry_point> <region> <stream_name> on|off [--app APPID]`"
    if len(positional) != 4:
        raise UsageError(f"{shape} takes exactly four arguments, e.g. `/recording stream live na cam-1 on`.")
    entry_point, region, stream, switch = positional
    if switch.lower() not in ("on", "off"):
        raise UsageError(f"The last argument of {shape} is `on` or `off`, not `{switch[:16]}`.")
    if "`" in stream:
        raise UsageError(
            "Stream name must not contain a backtick (Slack cannot show one in a command); it is one path segment "
            "of at most 128 characters, with no spaces or control characters, and not '.' or '..'."
        )
    try:
        target = Target(app_id=app_id, entry_point=entry_point, region=region)
        check_path_segment(stream, "Stream name")
    except ValidationError as exc:
        raise UsageError(" ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return Command("stream", target, stream=stream, enabled=switch.lower() == "on")


def _options(args: list[str], default_app: str) -> tuple[str, list[str]]:
    """The App ID (`--app`) and the positional arguments."""
    app_id, positional = default_app, []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--app":
            if i + 1 >= len(args):
                raise UsageError("`--app` needs an App ID after it.")
            app_id, i = args[i + 1], i + 2
            continue
        if arg.startswith("--app="):
            app_id = arg.removeprefix("--app=")
        elif arg.startswith("--"):
            raise UsageError(f"Unknown option `{arg[:40]}`; the only option is `--app APPID`.")
        else:
            positional.append(arg)
        i += 1
    return app_id, positional
