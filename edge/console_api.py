"""The operator's console at ``/``: one page (assets in ``edge/web/console/``, no CDN), one small JSON
document (``/api/console``, cached for a second) and a cached snapshot per camera. Added to the health API
by :mod:`roadside.edge.api_server` when the service runs one."""
from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, Response

from roadside.edge.console import Console
from roadside.edge.health_api import ServiceView

ASSETS = {"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"}


def _asset(name: str) -> str:
    return resources.files("roadside.edge").joinpath("web", "console", name).read_text(encoding="utf-8")


def add_console(app: FastAPI, view: ServiceView, console: Console) -> None:
    """Serve the console on ``app``."""
    page = _asset("index.html")
    assets = {name: _asset(name) for name in ASSETS}

    @app.get("/", response_class=HTMLResponse, summary="The operator's console", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    @app.get("/console/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        if name not in assets:
            raise HTTPException(404, f"no console asset {name!r}")
        return Response(assets[name], media_type=ASSETS[name], headers={"Cache-Control": "max-age=300"})

    @app.get("/api/console", summary="What the console shows: cameras, counts of the last hour, outbox, broker, "
                                     "controller (cached for 1 s)")
    def document() -> JSONResponse:
        return JSONResponse(console.document(view.status), headers={"Cache-Control": "no-store"})

    @app.get("/console/cameras/{camera_id}/snapshot.jpg", include_in_schema=False)
    def snapshot(camera_id: str) -> Response:
        if camera_id not in view.cameras():
            raise HTTPException(404, f"no camera {camera_id!r}")
        jpeg = console.snapshot(camera_id, view.snapshot)
        if jpeg is None:
            raise HTTPException(503, f"camera {camera_id!r} has not processed a frame yet")
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


__all__ = ["add_console"]
