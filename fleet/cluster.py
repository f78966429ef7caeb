"""A private RabbitMQ cluster on loopback ports, for the tests and ``roadside fleet load``: N nodes of the
Debian ``rabbitmq-server`` (with ``rabbitmq_mqtt``) in a temporary folder, each with its own MQTT port
(and TLS port), AMQP port, distribution port and a private ``epmd`` port, so that the machine's own
RabbitMQ is never touched. The nodes find each other by RabbitMQ's classic peer discovery; users and
permissions come from a definitions file (:mod:`roadside.fleet.acl`). Nothing of a deployed fleet uses it.

Starting takes RabbitMQ's own time (an Erlang node boots in 5-20 s, more on a loaded machine); the nodes
start in parallel.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from roadside.core.errors import RoadsideError
from roadside.core.mqtt import MqttConfig, TlsConfig
from roadside.core.testing import free_port, port_open
from roadside.fleet.acl import BrokerUser, admin_user, definitions

log = logging.getLogger("roadside.fleet.cluster")

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
RABBITMQCTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
#: a node that has not opened its ports after this long has failed to start
START_TIMEOUT_S = 180.0
#: a virtual host reported stopped on a node for this long is restarted there (s)
VHOST_RESTART_AFTER_S = 5.0


class ClusterError(RoadsideError):
    """The private cluster cannot be started (RabbitMQ missing, a node failed to boot or to join)."""


def rabbitmq_program() -> str:
    # the server itself, not Debian's /usr/sbin wrapper (which switches to the rabbitmq user, who cannot
    # write into our folders)
    exe = RABBITMQ_SERVER if os.access(RABBITMQ_SERVER, os.X_OK) else shutil.which("rabbitmq-server")
    if exe is None:
        raise ClusterError("RabbitMQ is not installed (apt-get install -y rabbitmq-server)")
    return exe


@dataclass
class Node:
    index: int
    name: str  # Erlang node name, e.g. fleet-ab12-1@localhost
    dir: Path
    mqtt_port: int
    amqp_port: int
    dist_port: int
    tls_port: int | None
    proc: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class RabbitCluster:
    """``nodes`` RabbitMQ nodes clustered on 127.0.0.1. ``users``: the accounts (an administrator
    ``admin`` with a random password is always added). ``tls``: the files ``cafile``, ``certfile``,
    ``keyfile`` of a server certificate: each node then also has a TLS MQTT port."""

    def __init__(self, nodes: int = 3, *, users: list[BrokerUser] = (), tls: Mapping[str, str | Path] | None = None,
                 workdir: str | Path | None = None) -> None:
        self.exe = rabbitmq_program()
        self._own_dir = workdir is None
        self.dir = Path(tempfile.mkdtemp(prefix="roadside-rabbit-") if workdir is None else workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tag = secrets.token_hex(3)
        self.cookie = secrets.token_hex(16)
        self.epmd_port = free_port()
        self.admin = admin_user("admin", secrets.token_hex(12))
        self.users = [self.admin, *users]
        self.tls = {k: str(v) for k, v in tls.items()} if tls else None
        defs = self.dir / "definitions.json"
        defs.write_text(json.dumps(definitions(self.users), indent=1))
        defs.chmod(0o600)
        self.nodes: list[Node] = []
        for i in range(1, nodes + 1):
            d = self.dir / f"n{i}"
            d.mkdir(exist_ok=True)
            node = Node(i, f"fleet-{self.tag}-{i}@localhost", d, free_port(), free_port(), free_port(),
                        free_port() if self.tls else None)
            self.nodes.append(node)
        names = [n.name for n in self.nodes]
        for node in self.nodes:
            conf = [f"listeners.tcp.default = 127.0.0.1:{node.amqp_port}",
                    f"mqtt.listeners.tcp.default = 127.0.0.1:{node.mqtt_port}",
                    "mqtt.allow_anonymous = false", "mqtt.vhost = /", "mqtt.exchange = amq.topic",
                    "loopback_users = none", f"load_definitions = {defs}",
                    "cluster_formation.peer_discovery_backend = rabbit_peer_discovery_classic_config",
                    *(f"cluster_formation.classic_config.nodes.{k} = {n}" for k, n in enumerate(names, 1)),
                    "log.file.level = warning", "log.console = false"]
            if self.tls:
                conf += [f"mqtt.listeners.ssl.default = 127.0.0.1:{node.tls_port}",
                         f"ssl_options.cacertfile = {self.tls['cafile']}",
                         f"ssl_options.certfile = {self.tls['certfile']}",
                         f"ssl_options.keyfile = {self.tls['keyfile']}",
                         "ssl_options.verify = verify_none", "ssl_options.fail_if_no_peer_cert = false"]
            (node.dir / "rabbitmq.conf").write_text("\n".join(conf) + "\n")
            (node.dir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
            cookie = node.dir / ".erlang.cookie"
            cookie.write_text(self.cookie)
            cookie.chmod(0o600)

    # -- addresses -----------------------------------------------------------------------------------
    def mqtt_config(self, nodes: list[int] | None = None, *, tls: bool = False, **settings) -> MqttConfig:
        """An MqttConfig naming these nodes (1-based; default all) in this order; ``tls``: their TLS ports
        (with ``ca_file`` set to the cluster's CA)."""
        chosen = [self.nodes[i - 1] for i in (nodes or [n.index for n in self.nodes])]
        if tls:
            if not self.tls:
                raise ValueError("this cluster was started without TLS")
            settings.setdefault("tls", TlsConfig(ca_file=self.tls["cafile"]))
        ports = [n.tls_port if tls else n.mqtt_port for n in chosen]
        return MqttConfig(brokers=[f"127.0.0.1:{p}" for p in ports], **settings)

    def amqp_urls(self, user: BrokerUser | None = None) -> list[str]:
        u = user or self.admin
        return [f"amqp://{u.name}:{u.password}@127.0.0.1:{n.amqp_port}/%2F" for n in self.nodes]

    # -- life cycle ----------------------------------------------------------------------------------
    def _env(self, node: Node) -> dict[str, str]:
        env = dict(os.environ)
        env.update(HOME=str(node.dir), RABBITMQ_NODENAME=node.name, RABBITMQ_CONFIG_FILE=str(node.dir / "rabbitmq.conf"),
                   RABBITMQ_ENABLED_PLUGINS_FILE=str(node.dir / "enabled_plugins"),
                   RABBITMQ_MNESIA_BASE=str(node.dir / "mnesia"), RABBITMQ_LOG_BASE=str(node.dir / "log"),
                   RABBITMQ_DIST_PORT=str(node.dist_port), RABBITMQ_PID_FILE=str(node.dir / "pid"),
                   ERL_EPMD_PORT=str(self.epmd_port), ERL_EPMD_ADDRESS="127.0.0.1")
        return env

    def _spawn(self, node: Node) -> None:
        out = open(node.dir / "server.log", "ab")
        node.proc = subprocess.Popen([self.exe], env=self._env(node), stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        out.close()

    def _await(self, nodes: list[Node]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        for node in nodes:
            ports = [node.mqtt_port, node.amqp_port] + ([node.tls_port] if node.tls_port else [])
            while not all(port_open(p) for p in ports):
                if not node.running:
                    raise ClusterError(f"RabbitMQ node {node.name} exited at start: {self.log(node.index)[-800:]}")
                if time.monotonic() > deadline:
                    raise ClusterError(f"RabbitMQ node {node.name} did not open its ports in {START_TIMEOUT_S:.0f} s: "
                                       f"{self.log(node.index)[-800:]}")
                time.sleep(0.2)

    def _await_vhost(self, nodes: list[Node]) -> None:
        """Open ports are not a working node: the virtual host ``/`` (MQTT's and the collectors') boots after
        them, and on a loaded machine a client that comes in between is refused with "vhost '/' is down".
        Wait until every node runs it (``rabbitmqctl await_startup``, then the vhost's cluster state)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        for node in nodes:
            self.ctl("await_startup", node=node.index, timeout=max(5.0, deadline - time.monotonic()))
        by_name = {n.name: n for n in nodes}
        state: dict = {}
        down_since: dict[str, float] = {}
        while True:
            try:
                rows = json.loads(self.ctl("list_vhosts", "name", "cluster_state", "--formatter", "json", node=nodes[0].index))
                state = next((r.get("cluster_state") or {} for r in rows if r.get("name") == "/"), {})
            except (ClusterError, ValueError, subprocess.TimeoutExpired) as e:
                state = {"error": str(e)}
            if all(state.get(n) == "running" for n in by_name):
                return
            now = time.monotonic()
            for name, node in by_name.items():
                if state.get(name) != "stopped":
                    down_since.pop(name, None)
                    continue
                # Nodes that boot together race to import the definitions while they form the cluster; the
                # loser's vhost can stay stopped for good ("vhost / is down" to every client). RabbitMQ's remedy
                # for a vhost down on one node is to restart it there.
                if now - down_since.setdefault(name, now) >= VHOST_RESTART_AFTER_S:
                    log.warning("the virtual host / is stopped on %s: restarting it there", name)
                    try:
                        self.ctl("restart_vhost", "--vhost", "/", node=node.index)
                    except (ClusterError, subprocess.TimeoutExpired) as e:
                        log.warning("restart_vhost on %s failed: %s", name, e)
                    down_since[name] = time.monotonic()
            if now > deadline:
                raise ClusterError(f"the virtual host / is not running on every node after {START_TIMEOUT_S:.0f} s: {state}")
            time.sleep(0.5)

    def start(self) -> "RabbitCluster":
        atexit.register(self.stop)  # the nodes run in their own sessions: never leave them behind
        try:
            # the first node boots alone (it imports the definitions and creates the virtual host), then the
            # others join it: booting all at once makes them wait on each other's tables and race on the import
            self._spawn(self.nodes[0])
            self._await(self.nodes[:1])
            for node in self.nodes[1:]:
                self._spawn(node)
            self._await(self.nodes)
            running = self.running_nodes()
            if sorted(running) != sorted(n.name for n in self.nodes):
                raise ClusterError(f"the RabbitMQ nodes did not form one cluster: running {running}")
            self._await_vhost(self.nodes)
        except BaseException:
            self.close()
            raise
        return self

    def ctl(self, *args: str, node: int = 1, timeout: float = 60) -> str:
        """``rabbitmqctl`` against one node; its output."""
        n = self.nodes[node - 1]
        r = subprocess.run([RABBITMQCTL if os.access(RABBITMQCTL, os.X_OK) else "rabbitmqctl", "-n", n.name, *args], env=self._env(n),
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise ClusterError(f"rabbitmqctl {' '.join(args)} on {n.name} failed: {(r.stderr or r.stdout)[-500:]}")
        return r.stdout

    def running_nodes(self, via: int | None = None) -> list[str]:
        via = via or next(n.index for n in self.nodes if n.running)
        status = json.loads(self.ctl("cluster_status", "--formatter", "json", node=via))
        return list(status.get("running_nodes", []))

    def kill(self, index: int) -> None:
        """SIGKILL one node (a crash: no clean shutdown, no Last Will from that node)."""
        node = self.nodes[index - 1]
        if node.running:
            os.killpg(node.proc.pid, signal.SIGKILL)
            node.proc.wait()
        node.proc = None

    def restart(self, index: int) -> None:
        """Start a killed or stopped node again (it rejoins the cluster with its data)."""
        node = self.nodes[index - 1]
        if node.running:
            return
        self._spawn(node)
        self._await([node])
        self._await_vhost([node])

    def stop(self) -> None:
        for node in self.nodes:
            if node.running:
                os.killpg(node.proc.pid, signal.SIGTERM)
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(node.proc.pid, signal.SIGKILL)
                    node.proc.wait()
                node.proc = None
        epmd = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"
        subprocess.run([epmd, "-port", str(self.epmd_port), "-kill"], capture_output=True,
                       env={**os.environ, "ERL_EPMD_PORT": str(self.epmd_port)})

    def close(self) -> None:
        self.stop()
        atexit.unregister(self.stop)
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "RabbitCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def log(self, index: int) -> str:
        node = self.nodes[index - 1]
        texts = []
        for p in [node.dir / "server.log", *sorted((node.dir / "log").glob("*.log"))]:
            if p.exists():
                texts.append(p.read_text(errors="replace"))
        return "\n".join(texts)


__all__ = ["ClusterError", "Node", "RabbitCluster", "rabbitmq_program"]
