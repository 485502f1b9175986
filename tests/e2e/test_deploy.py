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

from certwatch.settings import names as settings_names
from certwatch.store.postgres import PostgresStore
from tests.support import CONTRIB, ROOT
from tests.support.certs import CA
from tests.support.postgres import PostgresCluster, find_binaries
from tests.support.servers import Delivery, FeedServer, Receiver
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
        # the replicas' signals
        "certwatch_leader",
        "certwatch_alerts_held",
        "certwatch_db_round_trip_seconds",
        "certwatch_db_connections",
        "certwatch_outbox_claims_total",
    } <= used


def test_every_alert_rule_is_documented_and_unit_tested() -> None:
    """Each rule is in the README's table and has a promtool test that evaluates it."""
    rules = yaml.safe_load((CONTRIB / "prometheus" / "certwatch-rules.yml").read_text())
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = (CONTRIB / "prometheus" / "certwatch-rules.test.yml").read_text()
    readme = (ROOT / "README.md").read_text()
    for name in names:
        assert f"| `{name}` |" in readme, f"{name} is not in the README's table of rules"
        assert f"alertname: {name}" in tests, f"{name} has no promtool test"
    assert {"CertwatchDown", "CertwatchNoLeader", "CertwatchHeldAlertsGrowing"} <= names


def test_critical_pages_and_expected_never_alerts() -> None:
    """The ladder in Prometheus: critical pages, suspicious is a ticket, expected nothing."""
    rules = yaml.safe_load((CONTRIB / "prometheus" / "certwatch-rules.yml").read_text())
    by_name = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert by_name["CertwatchCriticalCertificate"]["labels"]["severity"] == "page"
    assert 'severity="critical"' in by_name["CertwatchCriticalCertificate"]["expr"]
    assert by_name["CertwatchSuspiciousCertificate"]["labels"]["severity"] == "ticket"
    assert not [name for name, r in by_name.items() if '"expected"' in r["expr"]]


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


def test_compose_gives_n8n_what_the_workflow_needs() -> None:
    """n8n gets the secret, crypto and access to the environment, each documented."""
    compose = yaml.safe_load((CONTRIB / "docker-compose.yml").read_text())
    environment = compose["services"]["n8n"]["environment"]
    readme = (ROOT / "README.md").read_text()
    assert environment["CERTWATCH_WEBHOOK_SECRET"] == "${WEBHOOK_SECRET:-}"
    assert environment["NODE_FUNCTION_ALLOW_BUILTIN"] == "crypto"
    assert environment["N8N_BLOCK_ENV_ACCESS_IN_NODE"] == "false"
    for variable in ("CERTWATCH_WEBHOOK_SECRET", "NODE_FUNCTION_ALLOW_BUILTIN",
                     "N8N_BLOCK_ENV_ACCESS_IN_NODE"):  # fmt: skip
        assert f"| `{variable}` |" in readme
    assert "n8n publish:workflow --id=" in readme


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


def n8n_workflow() -> dict[str, Any]:
    return json.loads((CONTRIB / "n8n" / "certwatch-workflow.json").read_text())  # type: ignore[no-any-return]


def run_code_node(
    deliveries: list[tuple[dict[str, str], bytes]],
    secret: str,
    *,
    failing: frozenset[int] = frozenset(),
) -> list[dict[str, Any]]:
    """Run the workflow's verifying Code node in node, as n8n runs it, on successive
    deliveries. n8n keeps a Code node's static data only when the execution succeeds: for
    the executions in ``failing`` (a later node failed) it is thrown away."""
    [code] = [n["parameters"]["jsCode"] for n in n8n_workflow()["nodes"]
              if n["name"] == "Verify signature"]  # fmt: skip
    harness = f"""
let staticData = {{}};
const deliveries = {json.dumps([[h, b.decode()] for h, b in deliveries])};
const failing = new Set({json.dumps(sorted(failing))});
(async () => {{
  const results = [];
  for (const [n, [headers, body]] of deliveries.entries()) {{
    const $input = {{ first: () => ({{ json: {{ headers }},
      binary: {{ data: {{ data: Buffer.from(body).toString('base64') }} }} }}) }};
    const $env = {{ CERTWATCH_WEBHOOK_SECRET: {json.dumps(secret)} }};
    const before = JSON.parse(JSON.stringify(staticData));
    const $getWorkflowStaticData = () => staticData;
    const out = await (async () => {{ {code} }})();
    if (failing.has(n)) staticData = before;
    results.push(out[0].json);
  }}
  console.log(JSON.stringify(results));
}})();
"""
    done = subprocess.run(
        ["node", "-e", harness], capture_output=True, text=True, timeout=30, check=True
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the n8n Code node")
class TestN8nWorkflow:
    SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

    async def real_deliveries(
        self, tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
    ) -> list[Delivery]:
        """Two deliveries of a running certwatch with WEBHOOK_SECRET: a suspicious alert and
        an info event."""
        settings = make_settings(
            tmp_path, certstream_url=feed.url, webhook_url=receiver.url, webhook_secret=self.SECRET
        )
        ours = ca.issue(["www.example.org"])
        async with run_service(settings) as service:
            await service.add_domain("example.org")
            pushed = await service.client.post("/certs", json={"pem": ours.final_pem()})
            assert pushed.status_code == 201, pushed.text
            await feed.send(ca.issue(["login.example.org"]).message())
            await feed.send(ours.message())
            return await receiver.wait_for(2)

    async def test_the_code_node_verifies_real_deliveries_and_drops_duplicates(
        self, tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
    ) -> None:
        """Real certwatch deliveries verify; tampered ones do not; a repeat is a duplicate."""
        first, second = await self.real_deliveries(tmp_path, feed, receiver, ca)
        good = (first.headers, first.body)
        tampered = (first.headers, first.body.replace(b"suspicious", b"info"))
        results = run_code_node([good, tampered, good, (second.headers, second.body)], self.SECRET)
        assert results[0]["verified"] is True
        assert results[0]["duplicate"] is False
        assert results[0]["payload"] == json.loads(first.body)
        assert (results[1]["verified"], results[1]["reason"]) == (False, "bad signature")
        assert (results[2]["verified"], results[2]["duplicate"]) == (True, True)
        assert results[3]["payload"]["severity"] == "info"

    async def test_a_failed_execution_is_no_duplicate_on_redelivery(
        self, tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
    ) -> None:
        """When a later node fails (n8n answers 500), certwatch's redelivery is handled."""
        first, _ = await self.real_deliveries(tmp_path, feed, receiver, ca)
        delivery = (first.headers, first.body)
        results = run_code_node([delivery, delivery], self.SECRET, failing=frozenset({0}))
        assert [r["duplicate"] for r in results] == [False, False]

    async def test_without_a_secret_nothing_is_accepted(
        self, tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
    ) -> None:
        """An n8n without CERTWATCH_WEBHOOK_SECRET refuses every delivery, saying why."""
        first, _ = await self.real_deliveries(tmp_path, feed, receiver, ca)
        [result] = run_code_node([(first.headers, first.body)], "")
        assert result["verified"] is False
        assert "CERTWATCH_WEBHOOK_SECRET" in result["reason"]

    def test_certwatch_is_answered_only_after_verification_and_handling(self) -> None:
        """401 when not verified; 200 only after the branch's node; every path answers."""
        workflow = n8n_workflow()
        nodes = {n["name"]: n for n in workflow["nodes"]}
        edges = {
            name: [[link["node"] for link in output] for output in value["main"]]
            for name, value in workflow["connections"].items()
        }
        webhook = nodes["certwatch webhook"]
        assert webhook["parameters"]["responseMode"] == "responseNode"
        assert webhook["parameters"]["options"]["rawBody"] is True
        assert edges["certwatch webhook"] == [["Verify signature"]]
        [[on_true], [on_false]] = edges["Verified?"]
        assert nodes[on_false]["parameters"]["options"]["responseCode"] == 401
        assert on_true == "Duplicate?"

        def answers(name: str) -> list[int]:
            """The response codes every path from ``name`` ends with."""
            node = nodes[name]
            if node["type"] == "n8n-nodes-base.respondToWebhook":
                assert name not in edges  # nothing runs after the answer
                return [node["parameters"]["options"]["responseCode"]]
            following = [n for output in edges.get(name, []) for n in output]
            assert following, f"{name} ends a path without answering certwatch"
            return [code for n in following for code in answers(n)]

        assert sorted(set(answers("certwatch webhook"))) == [200, 401]
        route = edges["Route by severity"]
        keys = [r["outputKey"] for r in nodes["Route by severity"]["parameters"]["rules"]["values"]]
        branch = dict(zip(keys, (names[0] for names in route), strict=True))
        assert branch["critical"].startswith("Page on-call")
        assert branch["suspicious"].startswith("Open a ticket")
        assert branch["expected"].startswith("Log")
        assert branch["lookalike"].startswith("Takedown ticket")
        assert branch["resolved"].startswith("Close incident")
        assert branch["info"].startswith("Heartbeat")
        for action in branch.values():  # the action runs first, then certwatch is answered
            [[after]] = edges[action]
            assert nodes[after]["parameters"]["options"]["responseCode"] == 200
