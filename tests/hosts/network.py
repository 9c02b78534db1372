"""Three hosts on this machine: Linux network namespaces joined by veth pairs (iproute2, as root).

Host D (``data``) holds PostgreSQL, Redis and the S3 server, each on an address of its own (on D's loopback),
so that a host can be cut off from one of them alone (a blackhole route to that address). Hosts A and B
reach D over a link each; this process (the test) reaches D over a link of its own, and A and B through D.
Every address is inside the namespaces made here (10.77.0.0/16); nothing leaves them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

#: Service addresses on host D (and the log's witness, run there too).
POSTGRES, REDIS, S3, WITNESS = "10.77.0.10", "10.77.0.11", "10.77.0.12", "10.77.0.13"
#: Each host's address on its link to D (D's end of the link is .1 of the same /24).
HOSTS = {"a": "10.77.1.2", "b": "10.77.2.2", "test": "10.77.9.2"}


def ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {res.stderr.strip()}")


@dataclass
class Net:
    """The namespaces of one run (their names carry this process's pid: runs never share them)."""

    tag: str

    def ns(self, host: str) -> str:
        return f"ap{self.tag}-{host}"

    def run_in(self, host: str) -> list[str]:
        """The prefix that runs a command on ``host``."""
        return ["ip", "netns", "exec", self.ns(host)]

    def link(self, host: str) -> str:
        return f"ap{self.tag}{host}"  # the host's end of its link to D (D's end: the same name + "d")

    def cut(self, host: str) -> None:
        """The host's link to D goes down: it reaches nothing, nothing reaches it."""
        ip("link", "set", self.link(host), "down", ns=self.ns(host))

    def heal(self, host: str) -> None:
        ip("link", "set", self.link(host), "up", ns=self.ns(host))
        ip("route", "replace", "10.77.0.0/16", "via", _d_side(HOSTS[host]), ns=self.ns(host))

    def partition(self, host: str, address: str) -> None:
        """``host`` can no longer reach ``address`` (one service of D); everything else still answers."""
        ip("route", "add", "blackhole", f"{address}/32", ns=self.ns(host))

    def unpartition(self, host: str, address: str) -> None:
        ip("route", "del", "blackhole", f"{address}/32", ns=self.ns(host))


def _d_side(address: str) -> str:
    return address.rsplit(".", 1)[0] + ".1"


@contextmanager
def three_hosts() -> Iterator[Net]:
    """Make D, A and B and the links; remove them all afterwards (their processes must be gone first)."""
    if os.geteuid() != 0:
        raise RuntimeError("the three-host test makes network namespaces: run it as root")
    net = Net(str(os.getpid()))
    made: list[str] = []
    try:
        for host in ("d", "a", "b"):
            ip("netns", "add", net.ns(host))
            made.append(net.ns(host))
            ip("link", "set", "lo", "up", ns=net.ns(host))
        for address in (POSTGRES, REDIS, S3, WITNESS):
            ip("addr", "add", f"{address}/32", "dev", "lo", ns=net.ns("d"))
        subprocess.run(["ip", "netns", "exec", net.ns("d"), "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)
        for host, address in HOSTS.items():
            end, d_end = net.link(host), net.link(host) + "d"
            ip("link", "add", end, "type", "veth", "peer", "name", d_end)
            ip("link", "set", d_end, "netns", net.ns("d"))
            ip("addr", "add", f"{_d_side(address)}/24", "dev", d_end, ns=net.ns("d"))
            ip("link", "set", d_end, "up", ns=net.ns("d"))
            ns = None if host == "test" else net.ns(host)
            if ns:
                ip("link", "set", end, "netns", ns)
            ip("addr", "add", f"{address}/24", "dev", end, ns=ns)
            ip("link", "set", end, "up", ns=ns)
            ip("route", "replace", "10.77.0.0/16", "via", _d_side(address), ns=ns)
        yield net
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", net.link("test")], capture_output=True, timeout=30)
