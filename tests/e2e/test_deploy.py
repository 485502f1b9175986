"""Deployment artefacts: checked against the running service they describe.

Format checkers (hadolint, check-jsonschema, promtool, systemd-analyze) run in .ci/run;
these tests check that the artefacts agree with certwatch itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
import yaml

from certwatch.delivery.webhook import sign
from certwatch.settings import names as settings_names
from certwatch.store.postgres import PostgresStore
from tests.support import CONTRIB, ROOT
from tests.support.postgres import PostgresCluster, find_binaries
from tests.support.service import make_settings, run_service

METRIC = re.compile(r"\bcertwatch_[a-z_]+")


async def exported_metric_names(tmp_path: Path) -> set[str]:
    """Every series name a running certwatch (with a webhook) can export."""
    settings = make_settings(tmp_path, webhook_url="http://127.0.0.1:9/hook")
    async with run_service(settings) as service:
        text = (await service.client.get("/metrics")).text
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            if kind == "counter":
                names.add(name if name.endswith("_total") else f"{name}_total")
            elif kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            else:
                names.add(name)
    return names


async def test_dashboard_queries_name_exported_metrics(tmp_path: Path) -> None:
    """The Grafana dashboard is valid JSON and every query names a metric certwatch exports."""
    dashboard = json.loads((CONTRIB / "grafana" / "certwatch-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {m for expr in exprs for m in METRIC.findall(expr)}
    assert used, "no queries"
    assert used <= await exported_metric_names(tmp_path)
    assert all(p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in dashboard["panels"])
    assert {
        "certwatch_outbox_pending",
        "certwatch_ct_missed_entries_total",
        "certwatch_ct_unrecovered_entries_total",
        "certwatch_ct_backfill_pending_entries",
    } <= used


async def test_alert_rules_name_exported_metrics(tmp_path: Path) -> None:
    """Every alert rule queries metrics certwatch exports (promtool checks the syntax)."""
    rules = yaml.safe_load((CONTRIB / "prometheus" / "certwatch-rules.yml").read_text())
    exprs = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    used = {m for expr in exprs.values() for m in METRIC.findall(expr)}
    assert used <= await exported_metric_names(tmp_path)
    contract = {
        "CertwatchFeedDown",
        "CertwatchFeedSilent",
        "CertwatchNoInfoEvents",
        "CertwatchSuspiciousCertificate",
        "CertwatchWebhookFailures",
    }
    assert contract <= exprs.keys()
    assert "certwatch_ct_unrecovered_entries_total" in exprs["CertwatchEntriesUnrecovered"]


async def test_the_readme_documents_every_setting_and_metric(tmp_path: Path) -> None:
    """Every environment variable certwatch reads and every metric it exports is in the README."""
    readme = (ROOT / "README.md").read_text()
    undocumented = [name for name in settings_names() if f"| `{name}` |" not in readme]
    assert not undocumented, f"settings not in the README's table: {undocumented}"
    families = {
        re.sub(r"_(bucket|sum|count)$", "", name) if "_seconds_" in name else name
        for name in await exported_metric_names(tmp_path)
        if not name.startswith(("certwatch_python", "certwatch_process"))
    }
    missing = sorted(name for name in families if f"| `{name}` |" not in readme)
    assert not missing, f"metrics not in the README's table: {missing}"


def test_compose_wires_certwatch_to_its_certstream() -> None:
    """The compose file points certwatch at the certstream service's full stream, with /data."""
    compose = yaml.safe_load((CONTRIB / "docker-compose.yml").read_text())
    config = yaml.safe_load((CONTRIB / "certstream" / "config.yaml").read_text())
    web = config["webserver"]
    certwatch = compose["services"]["certwatch"]
    for name in ("certwatch", "certwatch-a", "certwatch-b"):
        assert compose["services"][name]["environment"]["CERTSTREAM_URL"] == (
            f"ws://certstream:{web['listen_port']}{web['full_url']}"
        )
    assert certwatch["environment"]["DB_PATH"].startswith("/data/")
    assert "certwatch-data:/data" in certwatch["volumes"]


def test_compose_documents_every_variable_it_sets() -> None:
    """Every variable the compose file gives a certwatch service is in the README."""
    compose = yaml.safe_load((CONTRIB / "docker-compose.yml").read_text())
    readme = (ROOT / "README.md").read_text()
    for name, service in compose["services"].items():
        if name.startswith("certwatch"):
            for variable in service["environment"]:
                assert f"`{variable}`" in readme, f"{variable} is not documented"


def test_compose_replicas_share_the_database_its_init_script_makes() -> None:
    """The replicas profile: two replicas on one DATABASE_URL, the role init-certwatch makes."""
    compose = yaml.safe_load((CONTRIB / "docker-compose.yml").read_text())
    services = compose["services"]
    a, b, postgres = services["certwatch-a"], services["certwatch-b"], services["postgres"]
    assert a["profiles"] == b["profiles"] == postgres["profiles"] == ["replicas"]
    assert a["environment"]["DATABASE_URL"] == b["environment"]["DATABASE_URL"]
    assert a["environment"]["DATABASE_URL"].startswith(
        "postgresql://certwatch:${CERTWATCH_DB_PASSWORD:-}@postgres:5432/certwatch"
    )
    assert a["ports"] != b["ports"]
    assert b["depends_on"]["postgres"]["condition"] == "service_healthy"
    init = "./postgres/init-certwatch.sh:/docker-entrypoint-initdb.d/init-certwatch.sh:ro"
    assert init in postgres["volumes"]


async def test_the_init_script_makes_a_role_enough_for_certwatch(postgres: PostgresCluster) -> None:
    """contrib/postgres/init-certwatch.sh makes an ordinary role that certwatch runs as."""
    env = {
        "PATH": os.environ["PATH"],
        "PGHOST": str(postgres.socket),
        "PGPORT": str(postgres.port),
        "POSTGRES_USER": "postgres",
        "CERTWATCH_DB_USER": "compose_role",
        "CERTWATCH_DB_NAME": "compose_db",
        "CERTWATCH_DB_PASSWORD": "s3cret'; DROP ROLE x; --",
    }
    binaries = find_binaries()
    assert binaries is not None
    env["PATH"] = f"{binaries}:{env['PATH']}"
    await trio.run_process(
        [str(CONTRIB / "postgres" / "init-certwatch.sh")], env=env, capture_stdout=True
    )
    url = f"postgresql://compose_role@/compose_db?host={postgres.socket}&port={postgres.port}"
    store = await PostgresStore.open(url)  # migrates: creates its tables as that role
    try:
        assert await store.upsert_domain("example.org", "", 1.0)
        assert await store.domain_values() == ["example.org"]
        assert await store.try_lead()
    finally:
        store.close()
    with postgres.admin() as conn:
        role = conn.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = %s",
            ("compose_role",),
        ).fetchone()
    assert role == (False, False, False)


def _healthcheck_program() -> str:
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    command = re.search(r"HEALTHCHECK .*?CMD (\[.*\])", dockerfile)
    assert command is not None
    argv = json.loads(command.group(1))
    assert argv[:2] == ["python", "-c"]
    return str(argv[2])


async def test_docker_healthcheck_needs_nothing_but_python(tmp_path: Path) -> None:
    """The image's HEALTHCHECK succeeds against a serving certwatch and fails without one."""
    program = _healthcheck_program()
    settings = make_settings(tmp_path)
    async with run_service(settings) as service:
        port = service.url.rsplit(":", 1)[1]
        env = {**os.environ, "API_PORT": port}
        ok = await trio.run_process([sys.executable, "-c", program], env=env, check=False)
    down = await trio.run_process(
        [sys.executable, "-c", program], env=env, check=False, capture_stderr=True
    )
    assert ok.returncode == 0
    assert down.returncode != 0


def test_one_python_version_for_the_image_and_ci() -> None:
    """The image's Python is the one .python-version gives uv (and so the tests and CI)."""
    wanted = (ROOT / ".python-version").read_text().strip()
    image = re.search(
        r"^ARG PYTHON_IMAGE=python:([0-9.]+)-slim", (ROOT / "Dockerfile").read_text(), re.M
    )
    assert image is not None
    assert image.group(1) == wanted
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == wanted


def test_compose_pins_every_image() -> None:
    """Every image compose pulls is pinned to a version (overridable), never `latest`."""
    compose = yaml.safe_load((CONTRIB / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        image = service.get("image", "")
        if "build" in service:
            continue
        tag = image.rsplit(":", 1)[-1].rstrip("}")
        assert ":" in image, (name, image)
        assert tag not in ("", "latest"), (name, image)


def test_dockerfile_runtime_settings() -> None:
    """The image runs as non-root, keeps state in /data, binds 0.0.0.0 and execs certwatch."""
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert "DB_PATH=/data/certwatch.db" in text
    assert "API_HOST=0.0.0.0" in text
    assert re.search(r"^EXPOSE 8765$", text, re.M)
    assert re.search(r'^ENTRYPOINT \["certwatch"\]$', text, re.M)
    assert "uv sync --locked --no-dev" in text


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the n8n Code node")
class TestN8nWorkflow:
    SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

    def workflow(self) -> dict[str, Any]:
        return json.loads((CONTRIB / "n8n" / "certwatch-workflow.json").read_text())  # type: ignore[no-any-return]

    def run_code(self, deliveries: list[tuple[dict[str, str], bytes]], secret: str) -> Any:
        """Run the workflow's Code node in node, as n8n would, on successive deliveries."""
        (code,) = [n["parameters"]["jsCode"] for n in self.workflow()["nodes"]
                   if n["type"] == "n8n-nodes-base.code"]  # fmt: skip
        harness = f"""
const staticData = {{}};
const deliveries = {json.dumps([[h, b.decode()] for h, b in deliveries])};
(async () => {{
  const results = [];
  for (const [headers, body] of deliveries) {{
    const $input = {{ first: () => ({{ json: {{ headers }},
      binary: {{ data: {{ data: Buffer.from(body).toString('base64') }} }} }}) }};
    const $env = {{ CERTWATCH_WEBHOOK_SECRET: {json.dumps(secret)} }};
    const $getWorkflowStaticData = () => staticData;
    try {{
      const out = await (async () => {{ {code} }})();
      results.push({{ ok: out }});
    }} catch (e) {{ results.push({{ error: e.message }}); }}
  }}
  console.log(JSON.stringify(results));
}})();
"""
        done = subprocess.run(
            ["node", "-e", harness], capture_output=True, text=True, timeout=30, check=True
        )
        return json.loads(done.stdout)

    def delivery(self, event_id: str, body: dict[str, Any]) -> tuple[dict[str, str], bytes]:
        raw = json.dumps(body).encode()
        timestamp = int(__import__("time").time())
        headers = {
            "webhook-id": event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self.SECRET, event_id, timestamp, raw),
        }
        return headers, raw

    def test_verifies_signatures_and_drops_duplicates(self) -> None:
        """certwatch's signature verifies, a tampered body does not, a repeated id is dropped."""
        good = self.delivery("evt-1", {"severity": "suspicious", "event": "alert"})
        tampered = (good[0], good[1].replace(b"suspicious", b"info"))
        results = self.run_code([good, tampered, good], self.SECRET)
        assert results[0] == {"ok": [{"json": {"severity": "suspicious", "event": "alert"}}]}
        assert results[1] == {"error": "certwatch webhook: bad signature"}
        assert results[2] == {"ok": []}

    def test_routes_suspicious_info_and_resolved_apart(self) -> None:
        """Resolved follow-ups, suspicious alerts and info events go to three different nodes."""
        workflow = self.workflow()
        connections = workflow["connections"]
        resolved, rest = connections["Resolved follow-up?"]["main"]
        suspicious, info = connections["Suspicious?"]["main"]
        assert resolved[0]["node"].startswith("Close incident")
        assert rest[0]["node"] == "Suspicious?"
        assert suspicious[0]["node"].startswith("Page on-call")
        assert info[0]["node"].startswith("Heartbeat")
        webhook = next(n for n in workflow["nodes"] if n["type"] == "n8n-nodes-base.webhook")
        assert webhook["parameters"]["options"]["rawBody"] is True
