"""Scraping a running bot's /metrics and reading what moved, with prometheus_client's own parser."""

from __future__ import annotations

from collections.abc import Mapping

import requests
from prometheus_client.parser import text_string_to_metric_families

Series = tuple[str, frozenset[tuple[str, str]]]


class Scrape:
    """One scrape: every sample by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[Series, float] = {}
        self.families: set[str] = set()
        for family in text_string_to_metric_families(text):
            self.families.add(family.name)
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, name: str, **labels: str) -> float:
        """The sample `name` with exactly `labels` (0 when absent: a counter not moved yet)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """The sum of every sample `name` whose labels include `labels`."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)

    def names(self) -> set[str]:
        """Every sample name (counters' `_total`, histograms' `_bucket`/`_sum`/`_count`, ...)."""
        return {n for n, _ in self.samples}


def scrape(url: str) -> Scrape:
    answer = requests.get(url, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain"), answer.headers
    return Scrape(answer.text)


def moved(before: Scrape, after: Scrape) -> Mapping[Series, float]:
    """Every series whose value changed between two scrapes, by how much (histogram buckets too)."""
    keys = set(before.samples) | set(after.samples)
    changes = {k: after.samples.get(k, 0.0) - before.samples.get(k, 0.0) for k in keys}
    return {k: v for k, v in changes.items() if v}
