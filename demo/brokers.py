"""Which MQTT broker the demo uses: the configured one when it answers, else a local ``mosquitto`` when one is
installed, else an embedded Python broker (amqtt, the ``demo`` extra). Each says what it is."""
from __future__ import annotations

import asyncio
import logging
import socket
import threading
from dataclasses import dataclass, field
from typing import Callable

from roadside.core.errors import RoadsideError

log = logging.getLogger("roadside.demo")


def reachable(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """Something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


class EmbeddedBroker:
    """amqtt's broker on ``host:port``, in a thread with its own event loop (anonymous, no persistence)."""

    def __init__(self, host: str, port: int) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError:
            raise RoadsideError("no MQTT broker: none answers at the configured address, `mosquitto` is not "
                                "installed and the embedded broker needs the demo extra: "
                                "pip install -e '.[demo]' (or apt-get install mosquitto)") from None
        self.host, self.port = host, port
        self._config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        self._broker_cls = Broker
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._done: asyncio.Event | None = None

    def start(self) -> "EmbeddedBroker":
        # amqtt logs every client connection at INFO; the demo keeps its terminal for the summary
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._thread = threading.Thread(target=self._run, name="embedded-broker", daemon=True)
        self._thread.start()
        self._started.wait(15)
        if self._error is not None:
            raise RoadsideError(f"the embedded MQTT broker did not start on {self.host}:{self.port}: {self._error}")
        if not self._started.is_set():
            raise RoadsideError(f"the embedded MQTT broker did not start on {self.host}:{self.port} within 15 s")
        return self

    def _run(self) -> None:
        async def main() -> None:
            self._done = asyncio.Event()
            broker = self._broker_cls(self._config)
            try:
                await broker.start()
            except BaseException as e:  # noqa: BLE001 - reported to start()
                self._error = e
                self._started.set()
                return
            self._started.set()
            await self._done.wait()
            await broker.shutdown()

        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(main())
        finally:
            self._loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._done is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._done.set)
            self._thread.join(10)


@dataclass
class DemoBroker:
    """The broker the demo runs against: where it is, what it is, and how to stop it (if the demo started it)."""

    host: str
    port: int
    kind: str  # configured | mosquitto | embedded
    description: str
    stop: Callable[[], None] = field(default=lambda: None)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def choose_broker(host: str, port: int, want: str = "auto") -> DemoBroker:
    """``want``: auto (configured if it answers, else mosquitto, else embedded), configured, mosquitto or
    embedded. A broker the demo starts listens on the configured port when it is free, else on a free one."""
    if want in ("auto", "configured"):
        if reachable(host, port):
            return DemoBroker(host, port, "configured", f"the configured MQTT broker at {host}:{port}")
        if want == "configured":
            raise RoadsideError(f"no MQTT broker answers at {host}:{port} (start one, or use --broker auto)")
    from roadside.core.testing import free_port, mosquitto_program

    local = "127.0.0.1"
    own_port = port if host in ("127.0.0.1", "localhost") and port_free(local, port) else free_port()
    if want in ("auto", "mosquitto"):
        try:
            exe = mosquitto_program()
        except RoadsideError:
            if want == "mosquitto":
                raise
        else:
            from roadside.core.testing import PrivateBroker

            b = PrivateBroker(port=own_port, exe=exe).start()
            return DemoBroker(local, b.port, "mosquitto", f"a private mosquitto ({exe}) on {local}:{b.port}, "
                              f"started by the demo (none answered at {host}:{port})", b.close)
    b = EmbeddedBroker(local, own_port).start()
    return DemoBroker(local, own_port, "embedded", f"the embedded Python broker (amqtt) on {local}:{own_port}, "
                      f"started by the demo (none answered at {host}:{port}; mosquitto not installed)"
                      if want == "auto" else f"the embedded Python broker (amqtt) on {local}:{own_port}", b.stop)


__all__ = ["DemoBroker", "EmbeddedBroker", "choose_broker", "port_free", "reachable"]
