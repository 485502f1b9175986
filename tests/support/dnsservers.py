"""Real DNS servers for the end-to-end CAA tests: NSD (authoritative) behind Unbound
(recursive), from Debian's packages, on loopback high ports, in a temporary directory.

NSD serves the zones the test writes; Unbound resolves them through stub zones and chases
CNAMEs across them, as a CA's resolver does. Unbound caches nothing (``cache-max-ttl: 0``),
so a zone rewritten and reloaded mid-test is what the next lookup sees. Where the servers
are not installed, the tests that need them skip, saying why; ``.ci/run`` installs them and
sets ``CERTWATCH_REQUIRE_DNS=1``, which turns that skip into a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.support.servers import free_port

__all__ = ["DnsServers", "dns_servers_or_skip"]

NOT_INSTALLED = "needs NSD and Unbound (Debian's nsd and unbound packages)"


class DnsServers:
    """NSD and Unbound, started with ``zones`` (zone name -> zone file text)."""

    def __init__(self, zones: Mapping[str, str]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="certwatch-dns-"))
        self.zones = dict(zones)
        self.nsd_port = free_port()
        self.port = free_port()
        """Unbound's: what certwatch asks (CAA_RESOLVER)."""
        self._nsd: subprocess.Popen[bytes] | None = None
        self._unbound: subprocess.Popen[bytes] | None = None

    @property
    def resolver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write_zones(self) -> None:
        for name, text in self.zones.items():
            (self.dir / f"{name}.zone").write_text(text)

    def _configs(self) -> tuple[Path, Path]:
        d = self.dir
        nsd = d / "nsd.conf"
        nsd.write_text(
            "server:\n"
            f"  ip-address: 127.0.0.1@{self.nsd_port}\n"
            '  username: ""\n  chroot: ""\n'
            f'  zonesdir: "{d}"\n  database: ""\n  pidfile: ""\n'
            f'  zonelistfile: "{d}/zone.list"\n  xfrdfile: "{d}/xfrd.state"\n'
            f'  xfrdir: "{d}"\n  logfile: "{d}/nsd.log"\n  verbosity: 1\n'
            # No response rate limiting: every query comes from the one Unbound, and NSD
            # would slip or drop its answers past 200 a second (Unbound then retries late).
            "  rrl-ratelimit: 0\n  rrl-whitelist-ratelimit: 0\n"
            "remote-control:\n  control-enable: no\n"
            + "".join(f'zone:\n  name: "{z}"\n  zonefile: "{z}.zone"\n' for z in self.zones)
        )
        unbound = d / "unbound.conf"
        unbound.write_text(
            "server:\n"
            f"  interface: 127.0.0.1@{self.port}\n  port: {self.port}\n"
            '  username: ""\n  chroot: ""\n'
            f'  directory: "{d}"\n  pidfile: "{d}/unbound.pid"\n'
            "  do-daemonize: no\n  use-syslog: no\n  do-ip6: no\n"
            f'  logfile: "{d}/unbound.log"\n  verbosity: 1\n'
            "  access-control: 127.0.0.0/8 allow\n  do-not-query-localhost: no\n"
            '  module-config: "iterator"\n  root-hints: ""\n'
            "  cache-max-ttl: 0\n  cache-max-negative-ttl: 0\n  prefetch: no\n"
            '  local-zone: "test." nodefault\n'
            "remote-control:\n  control-enable: no\n"
            + "".join(
                f'stub-zone:\n  name: "{z}"\n  stub-addr: 127.0.0.1@{self.nsd_port}\n'
                for z in self.zones
            )
        )
        return nsd, unbound

    def start(self) -> DnsServers:
        self._write_zones()
        nsd, unbound = self._configs()
        subprocess.run(["nsd-checkconf", str(nsd)], check=True, capture_output=True)
        subprocess.run(["unbound-checkconf", str(unbound)], check=True, capture_output=True)
        self._nsd = subprocess.Popen(["nsd", "-d", "-c", str(nsd)], stdin=subprocess.DEVNULL)
        self._unbound = subprocess.Popen(
            ["unbound", "-d", "-c", str(unbound)], stdin=subprocess.DEVNULL
        )
        self._wait_until_answering()
        return self

    def _wait_until_answering(self, timeout: float = 20.0) -> None:
        """Block until Unbound answers a query through NSD (both are up)."""
        import dns.message
        import dns.query

        zone = next(iter(self.zones))
        deadline = time.monotonic() + timeout
        while True:
            for proc in (self._nsd, self._unbound):
                assert proc is not None
                if proc.poll() is not None:
                    raise RuntimeError(f"a DNS server exited at start: {self.logs()}")
            try:
                query = dns.message.make_query(zone, "SOA")
                answer = dns.query.udp(query, "127.0.0.1", port=self.port, timeout=0.5)
                if answer.answer:
                    return
            except (OSError, EOFError, dns.exception.DNSException):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the DNS servers did not answer within {timeout} s: "
                                   f"{self.logs()}")  # fmt: skip
            time.sleep(0.05)  # polling a starting daemon: nothing to wait on but the socket

    def rewrite(self, zone: str, text: str) -> None:
        """Replace a zone and have NSD reload it (SIGHUP re-reads the zone files)."""
        self.zones[zone] = text
        self._write_zones()
        assert self._nsd is not None
        self._nsd.send_signal(signal.SIGHUP)

    def logs(self) -> str:
        out = []
        for name in ("nsd.log", "unbound.log"):
            with contextlib.suppress(OSError):
                out.append((self.dir / name).read_text()[-2000:])
        return "\n".join(out)

    def stop(self) -> None:
        for proc in (self._unbound, self._nsd):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def dns_servers_or_skip(zones: Mapping[str, str]) -> Iterator[DnsServers]:
    """NSD and Unbound serving ``zones``, stopped at the end; a skip saying why where they
    are not installed (a failure with ``CERTWATCH_REQUIRE_DNS=1``)."""
    if shutil.which("nsd") is None or shutil.which("unbound") is None:
        if os.environ.get("CERTWATCH_REQUIRE_DNS") == "1":
            pytest.fail(f"CERTWATCH_REQUIRE_DNS=1 but the tests {NOT_INSTALLED}")
        pytest.skip(f"{NOT_INSTALLED}; .ci/run installs them")
    servers = DnsServers(zones)
    try:
        yield servers.start()
    finally:
        servers.stop()
