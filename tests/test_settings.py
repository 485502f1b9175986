"""Settings from the environment, and how the command reports bad ones."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from certwatch.core.cas import CAIdentity
from certwatch.errors import ConfigError
from certwatch.settings import Settings, names, redact_url
from tests.support.service import run_certwatch


def env(**values: str) -> dict[str, str]:
    return {"API_TOKEN": "secret-token", **values}


class TestFromEnv:
    def test_defaults(self) -> None:
        """With only API_TOKEN set, every variable takes the contract's default."""
        s = Settings.from_env(env())
        assert s.certstream_url == "ws://localhost:8080/full-stream"
        assert s.db_path == Path("certwatch.db")
        assert (s.api_host, s.api_port) == ("127.0.0.1", 8765)
        assert s.webhook_url is None
        assert s.webhook_timeout_s == 10
        assert s.cleanup_interval_s == 3600
        assert s.cleanup_grace_s == 86400
        assert s.alert_retention_s == 2592000
        assert s.suspicious_grace_s == 60
        assert s.log_level == "INFO"

    def test_every_variable_is_read(self, tmp_path: Path) -> None:
        """Each variable certwatch reads overrides its default; seconds accept fractions."""
        log_list = tmp_path / "log_list.json"
        log_list.write_text("{}")
        cas = tmp_path / "cas.json"
        cas.write_text(
            '[{"ski": "0a0b0c0d", "owner": "Corp PKI", "caa_domains": ["corp.example"]}]'
        )
        values = env(
            CERTSTREAM_URL="wss://certstream.example/full-stream",
            DB_PATH="/data/cw.db",
            DATABASE_URL="postgresql://certwatch@db.internal/certwatch",
            API_HOST="0.0.0.0",
            API_PORT="9000",
            WEBHOOK_URL="https://n8n.example/webhook/abc",
            WEBHOOK_SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            WEBHOOK_TIMEOUT_S="2.5",
            WEBHOOK_RETRY_PERIOD_S="3600",
            CLEANUP_INTERVAL_S="60",
            CLEANUP_GRACE_S="0",
            ALERT_RETENTION_S="86400",
            SUSPICIOUS_GRACE_S="0",
            LOG_LEVEL="debug",
            CT_BACKFILL="off",
            CT_LOG_LIST=str(log_list),
            CT_BACKFILL_MAX_ENTRIES="5000",
            CT_BACKFILL_RETRY_PERIOD_S="90.5",
            CA_IDENTITIES_FILE=str(cas),
            CAA_CHECK="no",
            CAA_RESOLVER="[::1]:5353",
            CAA_REFRESH_S="600",
            CAA_STABLE_S="0",
            CAA_TIMEOUT_S="0.5",
        )
        assert sorted(values) == sorted(names())  # a new setting is added here too
        s = Settings.from_env(values)
        assert s.database_url == "postgresql://certwatch@db.internal/certwatch"
        assert (s.ct_backfill, s.ct_log_list) == (False, str(log_list))
        assert (s.ct_backfill_max_entries, s.ct_backfill_retry_period_s) == (5000, 90.5)
        assert s.certstream_url == "wss://certstream.example/full-stream"
        assert s.db_path == Path("/data/cw.db")
        assert (s.api_host, s.api_port) == ("0.0.0.0", 9000)
        assert s.webhook_url == "https://n8n.example/webhook/abc"
        assert s.webhook_secret == "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        assert s.webhook_timeout_s == 2.5
        assert s.webhook_retry_period_s == 3600
        assert (s.cleanup_interval_s, s.cleanup_grace_s) == (60, 0)
        assert s.alert_retention_s == 86400
        assert s.suspicious_grace_s == 0
        assert s.log_level == "DEBUG"
        assert (s.caa_check, s.caa_resolver) == (False, ("::1", 5353))
        assert (s.caa_refresh_s, s.caa_stable_s, s.caa_timeout_s) == (600, 0, 0.5)
        assert s.ca_identities_file is not None
        assert s.ca_identities_file.path == str(cas)
        assert s.ca_identities_file.identities == (
            CAIdentity("0a0b0c0d", "Corp PKI", ("corp.example",)),
        )

    def test_a_resolver_without_a_port_is_asked_on_53(self) -> None:
        """CAA_RESOLVER=10.0.0.53 means port 53; IPv6 in brackets, with or without a port."""
        cases = [
            ("10.0.0.53", ("10.0.0.53", 53)),
            ("[2001:db8::53]", ("2001:db8::53", 53)),
            ("::1", ("::1", 53)),
        ]
        for raw, wanted in cases:
            assert Settings.from_env(env(CAA_RESOLVER=raw)).caa_resolver == wanted

    def test_token_never_in_repr(self) -> None:
        """The token and the webhook secret stay out of reprs (and so out of logs)."""
        s = Settings.from_env(env(WEBHOOK_SECRET="a-very-secret-value"))
        assert "secret-token" not in repr(s)
        assert "a-very-secret-value" not in repr(s)

    @pytest.mark.parametrize(
        ("values", "variable", "problem"),
        [
            ({"API_TOKEN": ""}, "API_TOKEN", "required"),
            ({"API_TOKEN": "   "}, "API_TOKEN", "required"),
            ({"API_PORT": "http"}, "API_PORT", "whole number"),
            ({"API_PORT": "70000"}, "API_PORT", "0 to 65535"),
            ({"API_PORT": "-1"}, "API_PORT", "0 to 65535"),
            ({"CERTSTREAM_URL": "http://x/full-stream"}, "CERTSTREAM_URL", "ws://"),
            ({"CERTSTREAM_URL": "ws://"}, "CERTSTREAM_URL", "no host"),
            ({"CERTSTREAM_URL": "ws://h:99999/"}, "CERTSTREAM_URL", "not a valid URL"),
            ({"WEBHOOK_URL": "ftp://x"}, "WEBHOOK_URL", "http://"),
            ({"WEBHOOK_TIMEOUT_S": "0"}, "WEBHOOK_TIMEOUT_S", "greater than 0"),
            ({"WEBHOOK_TIMEOUT_S": "ten"}, "WEBHOOK_TIMEOUT_S", "number of seconds"),
            ({"CLEANUP_INTERVAL_S": "-5"}, "CLEANUP_INTERVAL_S", "greater than 0"),
            ({"CLEANUP_GRACE_S": "-1"}, "CLEANUP_GRACE_S", "0 or more"),
            ({"ALERT_RETENTION_S": "inf"}, "ALERT_RETENTION_S", "finite"),
            ({"SUSPICIOUS_GRACE_S": "nan"}, "SUSPICIOUS_GRACE_S", "finite"),
            ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL", "one of"),
            ({"API_HOST": "a b"}, "API_HOST", "not a host"),
            ({"WEBHOOK_SECRET": "short"}, "WEBHOOK_SECRET", "at least 16"),
            ({"WEBHOOK_SECRET": "whsec_not*base64!"}, "WEBHOOK_SECRET", "not base64"),
            ({"WEBHOOK_SECRET": "whsec_c2hvcnQ="}, "WEBHOOK_SECRET", "at least 16 bytes"),
            ({"LOG_LEVEL": "WARN"}, "LOG_LEVEL", "DEBUG, INFO, WARNING, ERROR, CRITICAL"),
            ({"LOG_LEVEL": "notset"}, "LOG_LEVEL", "one of"),
            ({"LOG_LEVEL": "FATAL"}, "LOG_LEVEL", "one of"),
            ({"CT_BACKFILL": "maybe"}, "CT_BACKFILL", "1, true, yes, on, 0, false, no, off"),
            ({"CT_BACKFILL_MAX_ENTRIES": "0"}, "CT_BACKFILL_MAX_ENTRIES", "1 or more"),
            ({"CT_LOG_LIST": "/nonexistent/list.json"}, "CT_LOG_LIST", "does not exist"),
            ({"CT_LOG_LIST": "/"}, "CT_LOG_LIST", "is not a file"),
            ({"CAA_RESOLVER": "resolver.example:53"}, "CAA_RESOLVER", "an IP address"),
            ({"CAA_RESOLVER": "127.0.0.1:0"}, "CAA_RESOLVER", "port 0"),
            ({"CAA_RESOLVER": "127.0.0.1:99999"}, "CAA_RESOLVER", "0 to 65535"),
            ({"CAA_RESOLVER": "[::1]x"}, "CAA_RESOLVER", r"not \[address\]:port"),
            ({"CAA_TIMEOUT_S": "0"}, "CAA_TIMEOUT_S", "greater than 0"),
            ({"CAA_CHECK": "sometimes"}, "CAA_CHECK", "1, true, yes, on"),
            ({"API_TOKEN": "two words"}, "API_TOKEN", "whitespace or control"),
            ({"API_TOKEN": "tab\there"}, "API_TOKEN", "whitespace or control"),
        ],
    )
    def test_bad_values_name_the_variable(
        self, values: dict[str, str], variable: str, problem: str
    ) -> None:
        """A value that does not parse raises ConfigError naming the variable and the problem."""
        with pytest.raises(ConfigError, match=problem) as caught:
            Settings.from_env({**env(), **values})
        assert caught.value.variable == variable
        assert str(caught.value).startswith(f"{variable}: ")

    def test_a_token_with_a_trailing_newline_is_stripped(self) -> None:
        """`echo tok | kubectl create secret` stores "tok\\n": the token is "tok"."""
        assert Settings.from_env({"API_TOKEN": "tok-123\n"}).api_token == "tok-123"
        assert Settings.from_env({"API_TOKEN": "  tok-123\r\n"}).api_token == "tok-123"

    def test_empty_optional_values_mean_unset(self) -> None:
        """`WEBHOOK_URL=` (as compose files write it) means observer mode, not an error."""
        assert Settings.from_env(env(WEBHOOK_URL="", API_PORT="")).webhook_url is None


@pytest.mark.parametrize(
    ("values", "needle"),
    [({"API_TOKEN": ""}, "API_TOKEN"), ({"API_TOKEN": "x", "API_PORT": "eighty"}, "API_PORT")],
)
def test_command_exits_2_with_one_line(values: dict[str, str], needle: str) -> None:
    """A bad environment makes `python -m certwatch` exit 2 with one line, no traceback."""
    clean = {k: v for k, v in os.environ.items() if k not in ("API_TOKEN", "API_PORT")}
    result = run_certwatch(env={**clean, **values})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"certwatch: {needle}: ")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot be read: No such file"),
        ("[{", "not JSON"),
        ('[{"ski": "zz", "owner": "x", "caa_domains": ["a.example"]}]', "entry 0: ski"),
        ('[{"ski": "0a0b0c0d", "owner": "x", "caa_domains": ["a b"]}]', "entry 0: caa_domains"),
    ],
)
def test_an_unusable_ca_identities_file_stops_certwatch_at_start(
    tmp_path: Path, content: str | None, problem: str
) -> None:
    """A missing or malformed CA_IDENTITIES_FILE is exit 2, one line naming the variable."""
    path = tmp_path / "cas.json"
    if content is not None:
        path.write_text(content)
    result = run_certwatch(env={**os.environ, "API_TOKEN": "x", "CA_IDENTITIES_FILE": str(path)})
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"certwatch: CA_IDENTITIES_FILE: {str(path)!r}")
    assert problem in line


def test_unusable_database_exits_1_with_a_clear_message(tmp_path: Path) -> None:
    """A DB_PATH in a missing directory is a one-line startup error, exit status 1."""
    result = run_certwatch(
        env={**os.environ, "API_TOKEN": "x", "DB_PATH": str(tmp_path / "missing" / "cw.db")}
    )
    assert result.returncode == 1
    assert "cannot open database" in result.stderr
    assert "Traceback" not in result.stderr


class TestRedactUrl:
    @pytest.mark.parametrize(
        ("url", "shown"),
        [
            ("ws://localhost:8080/full-stream", "ws://localhost:8080/full-stream"),
            (
                "wss://user:pa55@feed.example:8443/full-stream?apikey=k3y&v=2",
                "wss://***@feed.example:8443/full-stream?apikey=***&v=***",
            ),
            ("wss://token@feed.example/full-stream", "wss://***@feed.example/full-stream"),
            ("wss://[::1]:8080/?flag", "wss://[::1]:8080/?flag"),
            ("https://hooks.example/w#secret", "https://hooks.example/w#***"),
        ],
    )
    def test_credentials_and_query_values_are_hidden(self, url: str, shown: str) -> None:
        """User, password, query values and fragment never appear; the rest does."""
        assert redact_url(url) == shown
