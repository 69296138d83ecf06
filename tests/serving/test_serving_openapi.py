"""The OpenAPI document describes what the API really answers: responses validate against its schemas."""

from __future__ import annotations

import re

import pytest
from jsonschema import Draft202012Validator
from jsonschema.validators import validator_for
from test_serving_api import ERROR_CASES


@pytest.fixture(scope="module")
def spec(loaded_app) -> dict:
    return loaded_app.test_client().get("/api/v1/openapi.json").get_json()


def response_schema(spec: dict, path: str, status: int) -> dict | None:
    """The JSON schema the document gives for ``path`` (template) and ``status``, with components resolvable."""
    op = spec["paths"][path]["get"]
    content = op["responses"][str(status)].get("content", {})
    if "application/json" not in content:
        return None
    return {**content["application/json"]["schema"], "components": spec["components"]}


def template_of(spec: dict, url: str) -> str:
    """The document's path template that matches a concrete URL path."""
    path = url.split("?")[0]
    for template in spec["paths"]:
        pattern = "^" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path):
            return template
    raise AssertionError(f"{path} is not documented")


def test_document_is_valid_openapi_32(spec: dict) -> None:
    assert spec["openapi"].startswith("3.2")  # 3.2: itemSchema declares the events of the SSE stream
    for name, schema in spec["components"]["schemas"].items():
        validator_for(schema, default=Draft202012Validator).check_schema(schema), name


def test_every_route_is_documented(loaded_app, spec: dict) -> None:
    routes = {re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule) for rule in loaded_app.url_map.iter_rules()
              if rule.rule.startswith(("/api/", "/metrics"))}
    documented = {re.sub(r"\{raw_", "{", p) for p in spec["paths"]}
    routes = {re.sub(r"\{raw_", "{", r) for r in routes}
    assert routes == documented


OK_URLS = [
    "/api/v1/health", "/api/v1/ready", "/api/v1/status",
    "/api/v1/windows/latest", "/api/v1/windows/latest?symbol=AAPL&venue=UBSA", "/api/v1/windows/current",
    "/api/v1/market", "/api/v1/market?window=current&sort=hhi&order=asc&limit=2&offset=1",
    "/api/v1/market/AAPL", "/api/v1/market/MSFT?window=current",
    "/api/v1/symbols/NVDA/timeseries", "/api/v1/symbols/AAPL/timeseries?venue=XNAS",
    "/api/v1/venues", "/api/v1/symbols", "/api/heatmap_data", "/api/heatmap_data?window=current",
    "/api/v1/alerts", "/api/v1/alerts?symbol=AAPL&kind=dark_share_surge&min_severity=low&limit=5",
]


@pytest.mark.parametrize("url", OK_URLS)
def test_responses_match_schema(client, spec: dict, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 200
    schema = response_schema(spec, template_of(spec, url), 200)
    Draft202012Validator(schema).validate(response.get_json())


@pytest.mark.parametrize("url, status, _message", [c for c in ERROR_CASES if c[0].startswith("/api/v1/")
                                                   and not c[0].startswith(("/api/v1/no-such", "/api/v2"))])
def test_error_responses_match_schema(client, spec: dict, url: str, status: int, _message: str) -> None:
    response = client.get(url)
    assert response.status_code == status
    schema = response_schema(spec, template_of(spec, url), status)
    assert schema is not None, f"{url}: status {status} is not documented"
    Draft202012Validator(schema).validate(response.get_json())


def test_parameters_in_document_match_what_the_api_accepts(client, spec: dict) -> None:
    """Each documented query parameter is accepted; an undocumented one is rejected."""
    samples = {"symbol": "AAPL", "venue": "UBSA", "window": "latest", "sort": "hhi", "order": "asc", "limit": "5",
               "offset": "0", "since": "2020-01-01T00:00:00Z", "until": "2040-01-01T00:00:00Z", "step": "300",
               "kind": "block_cluster", "min_severity": "medium"}
    for template, item in spec["paths"].items():
        if template in ("/api/v1/stream", "/api/v1/ready"):
            continue
        path = template.replace("{symbol}", "AAPL")
        query = [p["name"] for p in item["get"]["parameters"] if p["in"] == "query"]
        for name in query:
            assert client.get(f"{path}?{name}={samples[name]}").status_code == 200, (template, name)
        assert client.get(f"{path}?undocumented=1").status_code == 400, template
