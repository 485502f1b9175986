"""The OpenAPI document, and schemathesis against the live service with every check on."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import trio
from support.service import TOKEN, make_settings, run_service

CONFIG = Path(__file__).parent / "schemathesis.toml"
ST = str(Path(sys.executable).parent / "st")  # schemathesis' command, from this environment


async def test_document_covers_every_route_with_the_bearer_scheme(tmp_path: Path) -> None:
    """Every route is documented; protected ones need the bearer token, public ones nothing."""
    async with run_service(make_settings(tmp_path)) as service, httpx.AsyncClient() as anonymous:
        document = (await anonymous.get(service.url + "/openapi.json")).json()
        docs = await anonymous.get(service.url + "/docs")
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
    }
    assert document["security"] == [{"bearer": []}]
    paths = document["paths"]
    expected = {
        ("get", "/healthz"), ("get", "/metrics"),
        ("get", "/domains"), ("post", "/domains"), ("delete", "/domains/{value}"),
        ("get", "/certs"), ("post", "/certs"), ("delete", "/certs/{sha1}"),
        ("get", "/keys"), ("post", "/keys"), ("delete", "/keys/{spki}"),
        ("get", "/alerts"), ("post", "/alerts/{alert_id}/retry"), ("post", "/alerts/retry-failed"),
    }  # fmt: skip
    assert {(m, p) for p, ops in paths.items() for m in ops} == expected
    assert paths["/healthz"]["get"]["security"] == []
    assert paths["/metrics"]["get"]["security"] == []
    body = paths["/domains"]["post"]["requestBody"]
    assert body["required"] is True
    schema = body["content"]["application/json"]["schema"]
    assert schema["required"] == ["value"]
    assert schema["additionalProperties"] is False
    assert set(paths["/domains"]["post"]["responses"]) >= {"201", "401", "403", "422", "503"}
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]


async def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    """schemathesis, every check on (auth included), finds no failure in the live API."""
    async with run_service(make_settings(tmp_path)) as service:
        result = await trio.run_process(
            [
                ST, "--config-file", str(CONFIG), "run", service.url + "/openapi.json",
                "--checks", "all",
                "--header", f"Authorization: Bearer {TOKEN}",
                "--max-examples", "40",
                "--seed", "20261128",
                "--generation-database", "none",
                "--request-timeout", "10",
            ],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=tmp_path,  # schemathesis writes a cache (.schemathesis/) where it runs
        )  # fmt: skip
    output = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, output[-6000:]
    assert "Selected: 14/14" in output
