"""Hosts for a test: Linux network namespaces on a bridge, each with its own address.

    network = Network()
    services = network.add_host("services")          # 10.231.0.1
    host_a = network.add_host("host-a")              # 10.231.0.2
    network.forward(services, 5432, "127.0.0.1", 5432)   # a loopback service, seen at 10.231.0.1
    network.spawn(host_a, ["python", "manage.py", "ingest", ...], log=path, env=env)
    network.kill_host(host_a)        # SIGKILL of every process in the namespace
    network.cut_link(host_a)         # its cable pulled: processes run on, unreachable
    network.close()                  # processes, namespaces, bridge: all gone

Each host is a namespace with its own loopback, one interface (a veth pair whose other end is on
a bridge that has no address, so the namespaces reach each other and nothing else) and its own
host name (``unshare --uts``), so the processes' records show where they run. A service of this
machine's loopback (the test database, Redis, RabbitMQ) is made reachable at a host's address by
a pair of socat processes joined by a Unix socket: the filesystem is shared, the networks are not,
so no traffic leaves the namespaces' addresses and loopback. The listening end sets TCP keepalive
and a user timeout, as a server does for its clients (PostgreSQL's ``tcp_keepalives_*``), so a
connection from a host whose link went down is closed and its transaction rolled back.

Needs root (CAP_NET_ADMIN) and ``ip``, ``unshare`` and ``socat``; ``require_netns`` says clearly
when they are not there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
SUBNET = "10.231.0"

# The listening end of a forwarded service: keepalive probes after 3 s idle, every 2 s, 3 lost
# probes close it (~9 s); unacknowledged data closes it after 10 s (TCP_USER_TIMEOUT, option 18
# of IPPROTO_TCP, 6). Without it a backend serving a vanished host would wait out TCP's
# retransmissions (about 15 minutes) holding its locks.
SERVER_SIDE_TIMEOUTS = "keepalive,keepidle=3,keepintvl=2,keepcnt=3,setsockopt-int=6:18:10000"


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be made here (not root, no ``ip``, a sandbox forbids it)."""


def require_netns() -> None:
    """Raise ``NetnsUnavailable`` with the reason when this machine cannot make namespaces."""
    missing = [tool for tool in ("ip", "unshare", "socat") if shutil.which(tool) is None]
    if missing:
        raise NetnsUnavailable(f"{', '.join(missing)} not installed (iproute2, util-linux, socat)")
    if os.geteuid() != 0:
        raise NetnsUnavailable("network namespaces need root (CAP_NET_ADMIN); run as root")
    probe = f"hm-probe-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        raise NetnsUnavailable(f"`ip netns add` is not permitted here: {made.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)


@dataclass(frozen=True)
class Host:
    name: str
    namespace: str
    address: str
    veth: str  # the bridge's end of its cable


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Network:
    """Namespaces on one bridge, and the processes started in them; ``close`` removes all."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:5]  # names unique to this run: another may run beside it
        self.bridge = f"hmbr{self.tag}"
        self.hosts: dict[str, Host] = {}
        self.sockets = Path(tempfile.mkdtemp(prefix=f"hm-{self.tag}-"))  # short: sun_path
        self._forwarders: list[subprocess.Popen[bytes]] = []
        self._spawned: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("link", "set", self.bridge, "up")

    def add_host(self, name: str) -> Host:
        index = len(self.hosts) + 1
        host = Host(name, f"hm-{self.tag}-{name}", f"{SUBNET}.{index}", f"hm{self.tag}v{index}")
        _ip("netns", "add", host.namespace)
        self.hosts[name] = host
        _ip(
            "link",
            "add",
            host.veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            host.namespace,
        )
        _ip("link", "set", host.veth, "master", self.bridge, "up")
        _ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _ip("-n", host.namespace, "link", "set", "eth0", "up")
        _ip("-n", host.namespace, "link", "set", "lo", "up")
        return host

    def spawn(
        self,
        host: Host,
        argv: Sequence[str],
        *,
        log: Path,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Run ``argv`` on ``host`` (its network, its host name), output to ``log``."""
        out = log.open("ab")
        self._logs.append(out)
        process = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                host.namespace,
                "unshare",
                "--uts",
                "--",
                "sh",
                "-c",
                'hostname "$0" && exec "$@"',
                host.name,
                *argv,
            ],
            cwd=ROOT,
            env=dict(env if env is not None else os.environ),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._spawned.append(process)
        return process

    def forward(self, host: Host, port: int, target_host: str, target_port: int) -> None:
        """Make ``target_host:target_port`` (this machine's loopback) answer at
        ``host.address:port``."""
        path = self.sockets / f"{port}.sock"
        self._forwarders.append(
            subprocess.Popen(
                ["socat", f"UNIX-LISTEN:{path},fork", f"TCP:{target_host}:{target_port}"],
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        deadline = time.monotonic() + 10
        while not path.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"socat did not listen on {path}")
            time.sleep(0.02)
        self._forwarders.append(
            subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    host.namespace,
                    "socat",
                    f"TCP-LISTEN:{port},bind={host.address},fork,reuseaddr,{SERVER_SIDE_TIMEOUTS}",
                    f"UNIX-CONNECT:{path}",
                ],
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )

    def wait_for_port(self, host: Host, port: int, timeout_s: float = 20.0) -> None:
        """Until something accepts connections at ``host.address:port``, seen from ``host``."""
        deadline = time.monotonic() + timeout_s
        probe = f"exec 3<>/dev/tcp/{host.address}/{port}"
        while True:
            tried = subprocess.run(
                ["ip", "netns", "exec", host.namespace, "bash", "-c", probe], capture_output=True
            )
            if tried.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing answers at {host.address}:{port} on {host.name}")
            time.sleep(0.1)

    def pids(self, host: Host) -> list[int]:
        listed = subprocess.run(
            ["ip", "netns", "pids", host.namespace], capture_output=True, text=True
        )
        return [int(pid) for pid in listed.stdout.split()]

    def kill_host(self, host: Host) -> int:
        """SIGKILL every process on ``host`` at once, as a power cut would; how many."""
        pids = self.pids(host)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)

    def cut_link(self, host: Host) -> None:
        """The host's cable is pulled at the switch: its processes run on and hear nothing,
        and nobody hears from them (no FIN, no RST)."""
        _ip("link", "set", host.veth, "down")

    def close(self) -> None:
        """Stop everything started here and remove the namespaces and the bridge."""
        for host in self.hosts.values():
            self.kill_host(host)
        for forwarder in self._forwarders:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(forwarder.pid, signal.SIGKILL)
        for process in [*self._forwarders, *self._spawned]:
            # SIGKILLed above; one not reaped in time still leaves with its namespace below.
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
        for host in self.hosts.values():
            # A killed process leaves the namespace when it is reaped: wait for the last.
            deadline = time.monotonic() + 10
            while self.pids(host) and time.monotonic() < deadline:
                time.sleep(0.05)
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True)
            subprocess.run(["ip", "link", "del", host.veth], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        for out in self._logs:
            out.close()
        shutil.rmtree(self.sockets, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """Namespaces and links of this network still present (none after ``close``)."""
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        return [
            line.split()[0] if "hm-" in line else line.split(":")[1].strip()
            for line in (names + links).splitlines()
            if f"hm-{self.tag}-" in line or f"hm{self.tag}" in line or self.bridge in line
        ]
