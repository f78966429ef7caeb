"""The health API's server: its socket, bound at start-up (a taken port is an error then, not a dead thread
later), and uvicorn serving :func:`roadside.edge.health_api.create_app` in a thread of its own."""
from __future__ import annotations

import asyncio
import socket
import threading

from pydantic import SecretStr

from roadside.core.errors import RoadsideError
from roadside.edge.health_api import ServiceView, create_app
from roadside.edge.service_config import ApiConfig


def bind_api_socket(api: ApiConfig) -> socket.socket:
    """A listening socket on ``api.host:api.port``; RoadsideError saying what to change when it is taken."""
    sock = socket.socket(socket.AF_INET6 if ":" in api.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((api.host, api.port))
    except OSError as e:
        sock.close()
        raise RoadsideError(f"api: cannot listen on {api.host}:{api.port}: {e.strerror or e} "
                            "(another service there? set api.port, or api.enabled: false)") from None
    sock.listen(64)
    sock.setblocking(False)
    return sock


class ApiServer:
    """Binds at construction; :meth:`serve` starts answering; :meth:`stop` stops and closes the socket."""

    def __init__(self, api: ApiConfig):
        self.sock = bind_api_socket(api)
        self.server = None
        self.thread: threading.Thread | None = None

    def serve(self, view: ServiceView, token: SecretStr | None, calibration=None, console=None) -> "ApiServer":
        import uvicorn

        app = create_app(view, token, collectors=(console.collector(),) if console is not None else ())
        if calibration is not None:  # the installer's calibration page (edge/calibrate_api.py)
            from roadside.edge.calibrate_api import calibrate_router

            app.include_router(calibrate_router(calibration, token))
        if console is not None:  # the operator's console at / (roadside.edge.console_api)
            from roadside.edge.console_api import add_console

            add_console(app, view, console)
        cfg = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])),
                                       name="health-api", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(10)
        try:
            self.sock.close()
        except OSError:
            pass


__all__ = ["ApiServer", "bind_api_socket"]
