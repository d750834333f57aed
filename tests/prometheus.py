"""Reading Prometheus text-format answers in tests, with prometheus_client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

TOKEN = "scraper-token-for-tests"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the answer: (sample name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    """The sample ``name`` with exactly ``labels``; 0 when the answer has none (a counter not yet counted)."""
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def family_names(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}


def scrape(client) -> str:
    """``GET /metrics`` through Django's test ``client``, as a scraper holding the configured token."""
    from django.conf import settings
    from django.test import override_settings

    with override_settings(CLOUD={**settings.CLOUD, "METRICS_TOKEN": TOKEN}):
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return response.content.decode()


def dashboard_metric_names(path, prefixes: tuple[str, ...]) -> set[str]:
    """The metric names a Grafana dashboard's queries use, reduced to their family (no _total, _bucket, ...)."""
    import json
    import re

    board = json.loads(path.read_text())
    exprs = [target["expr"] for panel in board["panels"] for target in panel.get("targets", [])]
    exprs += [variable["definition"] for variable in board["templating"]["list"] if "definition" in variable]
    names = set()
    for expr in exprs:
        for name in re.findall(r"\b[a-z_][a-z0-9_]*\b", expr):
            if name.startswith(prefixes):
                names.add(re.sub(r"_(total|bucket|count|sum)$", "", name))
    return names
