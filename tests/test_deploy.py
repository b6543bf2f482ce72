"""What deploy/ ships for operators holds together: the alert rules are in Prometheus's
rule-group shape, the dashboard is a Grafana JSON model on a chosen data source, and every
recbot metric and label their expressions name is one a running bot serves."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from tests.metrics_helpers import scrape

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "recbot-rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "recbot.json"
PROMTOOL = shutil.which("promtool")
# ./test fetches it (scripts/promtool.sh); only outside CI may it be missing.
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not os.environ.get("CI"), reason="promtool (Prometheus's) is not installed"
)

# Prometheus's duration syntax: units from the largest down, each at most once (e.g. 1h30m, 0m).
DURATION = re.compile(r"^(?!$)(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$")
METRIC = re.compile(r"\brecbot_[a-z_]+")
SELECTOR = re.compile(r"\b(recbot_[a-z_]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"")
# What Prometheus adds to every series it scrapes: any selector may match on them.
TARGET_LABELS = {"job", "instance"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def rule_groups() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    assert isinstance(groups, list) and groups
    return groups


def rules() -> Iterator[dict[str, Any]]:
    for group in rule_groups():
        yield from group["rules"]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def expressions() -> list[str]:
    """Every PromQL expression of the rules and the dashboard (its panels' and its variables')."""
    board = dashboard()
    found = [rule["expr"] for rule in rules()]
    found += [target["expr"] for panel in board["panels"] for target in panel.get("targets", [])]
    found += [v["definition"] for v in board["templating"]["list"] if v.get("definition")]
    return found


def test_the_rules_are_prometheus_rule_groups() -> None:
    groups = rule_groups()
    names = [group["name"] for group in groups]
    assert len(names) == len(set(names)) and all(isinstance(n, str) and n for n in names)
    alerts = []
    for group in groups:
        assert set(group) == {"name", "rules"} and group["rules"], group["name"]
        for rule in group["rules"]:
            assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"]), rule["alert"]
            assert isinstance(rule["expr"], str) and rule["expr"].strip(), rule["alert"]
            assert DURATION.match(rule["for"]), (rule["alert"], rule["for"])
            assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
            alerts.append(rule["alert"])
    assert len(alerts) == len(set(alerts))


@pytest.mark.parametrize(
    ("duration", "valid"),
    [
        ("2m", True),
        ("0m", True),
        ("1h30m", True),
        ("", False),
        ("2", False),
        ("m", False),
        ("5m1h", False),
        ("1.5m", False),
    ],
)
def test_the_duration_check_is_prometheus_syntax(duration: str, valid: bool) -> None:
    assert bool(DURATION.match(duration)) is valid


def test_the_rules_cover_what_an_operator_is_woken_for() -> None:
    by_expr = " ".join(rule["expr"] for rule in rules())
    for name in (
        'recbot_applies_total{outcome="failed"}',
        "recbot_agora_rate_limited_total",
        'recbot_build_info{mode="socket"}',
        "recbot_change_request_ttl_seconds",
        "recbot_change_requests_oldest_pending_seconds",
        "recbot_drift_alerts_oldest_open_seconds",
        "recbot_database_up",
        'up{job="recbot"}',
    ):
        assert name in by_expr, name


def test_the_dashboard_is_a_grafana_model_on_the_chosen_data_source() -> None:
    board = dashboard()
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["instance"]["type"] == "query"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    chosen = {"type": "prometheus", "uid": "${datasource}"}
    for panel in board["panels"]:
        assert panel["datasource"] == chosen, panel["title"]
        assert all(target["datasource"] == chosen for target in panel.get("targets", [])), panel["title"]
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]


def served_labels(bot: Any, text: str) -> dict[str, tuple[str, set[str]]]:
    """Every family a scrape holds, with its type and label names: those its samples carry, and
    those declared in the bot's Metrics (a labelled family with no sample yet carries none)."""
    served: dict[str, tuple[str, set[str]]] = {}
    for family in text_string_to_metric_families(text):
        labels = {name for sample in family.samples for name in sample.labels} - {"le"}
        served[family.name] = (family.type, labels)
    for metric in vars(bot.services.metrics).values():
        if isinstance(metric, MetricWrapperBase) and metric._name in served:
            served[metric._name][1].update(metric._labelnames)
    return served


def family_of(name: str, served: dict[str, tuple[str, set[str]]]) -> tuple[str, set[str]]:
    """The family a series name belongs to (`x_total` is counter `x`'s, `x_bucket` histogram `x`'s)
    and the labels a selector on it may use; fails when nothing served has that name."""
    if name in served:
        return name, served[name][1]
    if name.endswith("_total") and served.get(name.removesuffix("_total"), ("",))[0] == "counter":
        return name.removesuffix("_total"), served[name.removesuffix("_total")][1]
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if name.endswith(suffix) and served.get(base, ("",))[0] == "histogram":
            return base, served[base][1] | ({"le"} if suffix == "_bucket" else set())
    raise AssertionError(f"{name} is not served by a running recbot")


def test_every_metric_and_label_named_is_served_by_a_running_bot(bot) -> None:
    served = served_labels(bot, scrape(bot.metrics_url).text)
    exprs = expressions()
    named = {name for expr in exprs for name in METRIC.findall(expr)}
    assert len(named) >= 20  # the extraction found the expressions' metrics
    for name in named:
        family_of(name, served)
    for expr in exprs:
        for name, matchers in SELECTOR.findall(expr):
            _, labels = family_of(name, served)
            for label in MATCHER.findall(matchers):
                assert label in labels | TARGET_LABELS, f"{name} has no label {label} ({expr})"


def test_a_label_not_on_a_family_is_caught(bot) -> None:
    served = served_labels(bot, scrape(bot.metrics_url).text)
    assert "outcome" in family_of("recbot_applies_total", served)[1]
    assert "le" in family_of("recbot_ack_seconds_bucket", served)[1]
    assert "state" not in family_of("recbot_applies_total", served)[1]
    with pytest.raises(AssertionError):
        family_of("recbot_applies_bucket", served)  # a counter has no buckets
    with pytest.raises(AssertionError):
        family_of("recbot_no_such_family", served)


def test_the_ttl_gauge_says_the_settings_ttl(bot) -> None:
    found = scrape(bot.metrics_url)
    assert found.value("recbot_change_request_ttl_seconds") == bot.services.settings.RECBOT_REQUEST_TTL_SECONDS


def test_the_readme_table_lists_every_family_a_bot_serves_once(bot) -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("\n## Metrics, alerts and probes\n")
    section = readme[start : readme.index("\n## ", start + 1)]
    rows = re.findall(r"^\| `(recbot_[a-z_]+)` \| (\w+) \|", section, re.MULTILINE)
    served = served_labels(bot, scrape(bot.metrics_url).text)
    listed = [family_of(name, served)[0] for name, _ in rows]
    assert not [name for name in served if name.endswith("_created")]  # turned off: they double a scrape
    assert sorted(listed) == sorted(served) and len(listed) == len(set(listed))
    assert all(kind == served[family_of(name, served)[0]][0] for name, kind in rows), rows


def promtool(*args: str, cwd: Path) -> None:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_passes_the_rules_and_their_unit_tests() -> None:
    promtool("check", "rules", RULES.name, cwd=RULES.parent)
    promtool("test", "rules", "recbot-rules.test.yml", cwd=RULES.parent)


@needs_promtool
def test_promtool_parses_every_dashboard_expression(tmp_path: Path) -> None:
    """Each expression as a recording rule, with Grafana's variables given values."""
    exprs = [
        target["expr"].replace("$__rate_interval", "5m").replace("$instance", ".*")
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]
    records = [{"record": f"dashboard:expr{i}", "expr": expr} for i, expr in enumerate(exprs)]
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    promtool("check", "rules", "dashboard.yml", cwd=tmp_path)
