"""The OpenAPI document, and schemathesis against the live service with every check on."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import httpx
import pytest
import trio

from tests.support import ROOT
from tests.support.service import TOKEN, make_settings, run_service

CONFIG = ROOT / "tests" / "schemathesis.toml"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ROUTES = {
    ("get", "/healthz"), ("get", "/metrics"),
    ("get", "/domains"), ("post", "/domains"), ("delete", "/domains/{value}"),
    ("get", "/certs"), ("post", "/certs"), ("delete", "/certs/{sha1}"),
    ("get", "/keys"), ("post", "/keys"), ("delete", "/keys/{spki}"),
    ("get", "/rules"), ("post", "/rules"), ("delete", "/rules/{rule_id}"),
    ("get", "/brands"), ("post", "/brands"), ("delete", "/brands/{domain}"),
    ("get", "/alerts"), ("post", "/alerts/{alert_id}/retry"), ("post", "/alerts/retry-failed"),
    ("post", "/alerts/{alert_id}/acknowledge"),
}  # fmt: skip
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
    assert {(m, p) for p, ops in paths.items() for m in ops} == ROUTES
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
    assert f"Selected: {len(ROUTES)}/{len(ROUTES)}" in output


async def test_the_docs_page_needs_nothing_from_the_internet(tmp_path: Path) -> None:
    """/docs loads Swagger UI's script and style from certwatch itself, anonymously."""
    async with run_service(make_settings(tmp_path)) as service, httpx.AsyncClient() as anonymous:
        page = (await anonymous.get(service.url + "/docs")).text
        references = re.findall(r'(?:src|href)="([^"]+)"', page)
        assets = {ref: await anonymous.get(f"{service.url}/{ref}") for ref in references}
        missing = await anonymous.get(service.url + "/docs/assets/../../../etc/passwd")
    assert sorted(references) == ["docs/assets/swagger-ui-bundle.js", "docs/assets/swagger-ui.css"]
    assert [a.status_code for a in assets.values()] == [200, 200]
    assert "SwaggerUIBundle" in assets["docs/assets/swagger-ui-bundle.js"].text
    assert missing.status_code == 404


async def test_the_docs_page_works_behind_a_path_prefix_and_with_a_slash(tmp_path: Path) -> None:
    """/docs and /docs/ name the document and assets relatively: a proxy's prefix works."""
    async with run_service(make_settings(tmp_path)) as service, httpx.AsyncClient() as anonymous:
        pages = {path: await anonymous.get(service.url + path) for path in ("/docs", "/docs/")}
        for path, page in pages.items():
            assert page.status_code == 200, path
            # Resolved as a browser does, against the page under a proxy's prefix, each
            # reference stays under the prefix and names what certwatch serves.
            under = "https://proxy.example/certwatch" + path
            for reference in re.findall(r'(?:src|href|url:)\s*=?\s*"([^"]+)"', page.text):
                resolved = httpx.URL(under).join(reference)
                assert str(resolved).startswith("https://proxy.example/certwatch/"), reference
                local = str(resolved).removeprefix("https://proxy.example/certwatch")
                assert (await anonymous.get(service.url + local)).status_code == 200, local


async def test_every_route_is_listed_under_its_resource_with_a_whole_summary(
    tmp_path: Path,
) -> None:
    """Routes are tagged by resource (no "default"), and each summary is one sentence."""
    async with run_service(make_settings(tmp_path)) as service:
        document = (await service.client.get("/openapi.json")).json()
    tags = {t["name"] for t in document["tags"]}
    for path, operations in document["paths"].items():
        for operation in operations.values():
            assert len(operation["tags"]) == 1
            assert operation["tags"][0] in tags, path
            assert operation["summary"].endswith("."), (path, operation["summary"])
    assert tags == {"domains", "certs", "keys", "rules", "brands", "alerts", "health"}


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
async def test_the_docs_page_renders_every_route_in_a_browser_offline(tmp_path: Path) -> None:
    """Headless Chromium, with every host but loopback unresolvable, renders all routes."""
    assert CHROMIUM is not None
    async with run_service(make_settings(tmp_path)) as service:
        result = await trio.run_process(
            [
                CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-sync",
                "--disable-component-update", f"--user-data-dir={tmp_path / 'chromium'}",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--virtual-time-budget=20000", "--dump-dom", service.url + "/docs",
            ],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
        )  # fmt: skip
    dom = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    rendered = set(re.findall(r'data-path="([^"]+)"', dom))
    assert rendered == {path for _, path in ROUTES}, dom[-2000:]
