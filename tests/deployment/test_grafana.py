"""deploy/grafana/allot.json: every series the dashboard plots is one allot's /metrics
exports, with labels it has and routes that exist, so no panel stays empty."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "allot.json"
_SERIES = re.compile(r"\b(allot_[a-z_]+)(?:\{([^}]*)\})?")
_MATCHER = re.compile(r'([a-z_]+)\s*(=~|!=|=)\s*"([^"]*)"')
_HISTOGRAM_PARTS = ("_bucket", "_sum", "_count")


def _expressions() -> list[str]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def _exported(text: str) -> dict[str, set[str]]:
    """Metric family -> the label names its samples carry, from a /metrics page."""
    families: dict[str, set[str]] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            families.setdefault(line.split()[2], set())
        elif line and not line.startswith("#"):
            name, _, rest = line.partition("{")
            labels = {m.group(1) for m in re.finditer(r'([a-z_]+)="', rest.split("}")[0])}
            for family in families:
                if name == family or name.removeprefix(family) in (*_HISTOGRAM_PARTS, "_total"):
                    families[family] |= labels
    return families


async def test_every_series_the_dashboard_plots_is_exported(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    await client.get("/allocation_candidates?resources=VCPU:1")  # one sample of each kind
    families = _exported((await client.get("/metrics")).text)
    routes = set(app.openapi()["paths"])  # every route template, as the metrics name them
    expressions = _expressions()
    assert len(expressions) >= 9
    for expression in expressions:
        series = _SERIES.findall(expression)
        assert series, expression
        for name, selector in series:
            family = next(
                (f for f in families if name in (f, *(f + s for s in _HISTOGRAM_PARTS))),
                None,
            ) or next((f for f in families if name == f + "_total"), None)
            assert family is not None, f"{name} is not exported ({expression})"
            for label, _, value in _MATCHER.findall(selector):
                assert label in families[family], f"{name} has no label {label}"
                if label == "route":
                    assert value in routes, f"no route {value}"
