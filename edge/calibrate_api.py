"""The installer's calibration page and its API (a router of the edge service's API; edge/api_server.py
includes it): ``/calibrate`` (plain HTML/JS/CSS from ``edge/web/calibrate``, no CDN) and
``/api/calibrate/...``. It sees the service only through a :class:`CalibrationService` (implemented by
:class:`roadside.edge.calibrate_view.CalibrationView`).

Reading (frame, tracks, layout, validation) needs nothing; the preview, saving and the cameras' own changes
(probing a source, adding a camera, changing its source, removing it) need the API's bearer token, which
only the site file sets: the page cannot set it. A save is validated item by item: a 422 answer lists every
problem with its item, field and key path (a camera's, with its field).
"""
from __future__ import annotations

from importlib import resources
from typing import Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, SecretStr

from roadside.core.errors import ConfigError
from roadside.edge.api_common import known_camera, token_guard
from roadside.edge.manual_count import LiveCountBody, LiveCountStart, ManualCountBody

#: the page's files and their media types (nothing else under /calibrate/ is served)
ASSETS = {"index.html": "text/html; charset=utf-8", "calibrate.js": "text/javascript; charset=utf-8",
          "calibrate.css": "text/css; charset=utf-8", "count.html": "text/html; charset=utf-8",
          "count.js": "text/javascript; charset=utf-8"}


class CalibrationService(Protocol):
    def cameras(self) -> list[str]: ...

    def camera(self, camera: str) -> dict: ...

    def live(self, camera: str, paths: bool = True, heat_minutes: float = 10.0) -> dict: ...

    def frame_jpeg(self, camera: str) -> bytes | None: ...

    def validate(self, camera: str, lines: list, zones: list) -> list[dict]: ...

    def preview(self, camera: str, lines: list, zones: list) -> list[dict]: ...

    def save(self, camera: str, lines: list, zones: list, by: str, client: str | None) -> dict: ...

    def changes(self) -> list[dict]: ...

    def device(self) -> dict: ...

    def start_live_count(self, camera: str, minutes: float) -> dict: ...

    def finish_live_count(self, camera: str, body: Any) -> dict: ...

    def probe(self, settings: dict) -> dict: ...

    def add_camera(self, settings: dict, by: str, client: str | None) -> dict: ...

    def change_source(self, camera: str, settings: dict, by: str, client: str | None) -> dict: ...

    def remove_camera(self, camera: str, by: str, client: str | None) -> dict: ...

    def clips(self, camera: str) -> list[str]: ...

    def clip(self, camera: str, name: str) -> Any: ...

    def save_manual_count(self, camera: str, body: Any) -> dict: ...


class LayoutBody(BaseModel):
    """An edited layout: the camera's lines and zones as in the site file."""

    lines: list[Any] = Field(default_factory=list, description="count lines ({id, a, b, name, approach, movement, "
                                                                 "classes, phase})")
    zones: list[Any] = Field(default_factory=list, description="zones ({id, polygon, name, approach, movement, "
                                                                 "classes, phase})")
    by: str | None = Field(None, max_length=80, description="who makes the change (for the change log)")


class CameraBody(BaseModel):
    """A camera's id and source settings, as in the site file (``cameras[]``)."""

    id: Any = Field(None, description="camera id (letters, digits, `_.-`); taken from the path when changing a source")
    source: Any = Field(None, description="a video file (relative to the site file's folder), an `rtsp://` or "
                                          "`http(s)://` URL, or a device number (`\"0\"`)")
    loop: Any = Field(None, description="files: start again at the end")
    realtime: Any = Field(None, description="files: deliver frames at the file's frame rate")
    rtsp_transport: Any = Field(None, description="RTSP: `tcp` or `udp`")
    fps: Any = Field(None, description="frame rate to assume when a stream reports none")
    by: str | None = Field(None, max_length=80, description="who makes the change (for the change log)")

    def settings(self) -> dict:
        """The settings given (checked by the site file's schema, each problem naming its field)."""
        return self.model_dump(exclude={"by"}, exclude_none=True)


def _asset(name: str) -> bytes:
    return resources.files("roadside.edge").joinpath("web", "calibrate", name).read_bytes()


def calibrate_router(view: CalibrationService, token: SecretStr | None) -> APIRouter:
    router = APIRouter()
    require_token = token_guard(token)

    def known(camera_id: str) -> str:
        return known_camera(view.cameras(), camera_id)

    @router.get("/calibrate", include_in_schema=False)
    @router.get("/calibrate/", include_in_schema=False)
    def page() -> Response:
        return Response(_asset("index.html"), media_type=ASSETS["index.html"], headers={"Cache-Control": "no-cache"})

    @router.get("/calibrate/count", include_in_schema=False)
    def count_page() -> Response:
        return Response(_asset("count.html"), media_type=ASSETS["count.html"], headers={"Cache-Control": "no-cache"})

    @router.get("/calibrate/static/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        if name not in ASSETS:
            raise HTTPException(404, f"no such file: {name}")
        return Response(_asset(name), media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})

    @router.get("/api/calibrate/cameras", summary="The cameras and their layouts")
    def cameras() -> list[dict]:
        return [view.camera(c) for c in view.cameras()]

    @router.get("/api/calibrate/device", summary="The site, device, cameras and whether saving works (why not)")
    def device() -> dict:
        return view.device()

    def camera_change(action, request: Request):
        """Run a change of the cameras; its problems as the page shows them (422 each with its field, 409)."""
        from roadside.edge.layout_store import CameraRejected

        try:
            return action(request.client.host if request.client else None)
        except CameraRejected as e:
            return JSONResponse({"detail": f"the camera has {len(e.problems)} problem(s); nothing was saved",
                                 "problems": e.problems}, status_code=422)
        except ConfigError as e:
            return JSONResponse({"detail": str(e), "problems": []}, status_code=409)

    @router.post("/api/calibrate/probe", dependencies=[Depends(require_token)],
                 summary="Open a source as a camera would and read its frame size (needs the bearer token)",
                 responses={422: {"description": "the settings' or the source's problems, each with its field"}})
    def probe(body: CameraBody, request: Request):
        return camera_change(lambda _client: view.probe({"id": "probe", **body.settings()}), request)

    @router.post("/api/calibrate/cameras", dependencies=[Depends(require_token)],
                 summary="Add a camera: probe its source, save it into the site file (with a backup), start it "
                         "without a restart (needs the bearer token)",
                 responses={422: {"description": "the camera's problems, each with its field"},
                            409: {"description": "adding is not possible (why)"}})
    def add_camera(body: CameraBody, request: Request):
        return camera_change(lambda client: view.add_camera(body.settings(), body.by or "installer", client), request)

    @router.put("/api/calibrate/cameras/{camera_id}/source", dependencies=[Depends(require_token)],
                summary="Change a camera's source: probe it, save, restart the camera on it (needs the bearer "
                        "token)", responses={422: {"description": "the settings' problems, each with its field"},
                                            409: {"description": "saving is not possible (why)"}})
    def change_source(camera_id: str, body: CameraBody, request: Request):
        cam = known(camera_id)
        settings = {k: v for k, v in body.settings().items() if k != "id"}
        return camera_change(lambda client: view.change_source(cam, settings, body.by or "installer", client), request)

    @router.delete("/api/calibrate/cameras/{camera_id}", dependencies=[Depends(require_token)],
                   summary="Remove a camera from the site file and stop it (needs the bearer token)")
    def remove_camera(camera_id: str, request: Request, by: str | None = None):
        cam = known(camera_id)
        return camera_change(lambda client: view.remove_camera(cam, (by or "installer")[:80], client), request)

    @router.get("/api/calibrate/cameras/{camera_id}", summary="A camera's lines, zones, frame size, categories, phases")
    def camera(camera_id: str) -> dict:
        return view.camera(known(camera_id))

    @router.get("/api/calibrate/cameras/{camera_id}/frame.jpg", response_class=Response,
                summary="The camera's latest processed frame, as the camera sent it (no drawing)",
                responses={200: {"content": {"image/jpeg": {}}}, 503: {}})
    def frame(camera_id: str) -> Response:
        jpeg = view.frame_jpeg(known(camera_id))
        if jpeg is None:
            raise HTTPException(503, f"camera {camera_id!r} has not processed a frame yet")
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @router.get("/api/calibrate/cameras/{camera_id}/live",
                summary="Tracks of the latest frame, counts, zone occupancy, recent track paths, their heat map "
                        "over the last `heat_minutes`, line warnings, preview")
    def live(camera_id: str, paths: bool = True, heat_minutes: float = Query(10.0, gt=0, le=10)) -> dict:
        return view.live(known(camera_id), paths, heat_minutes)

    @router.post("/api/calibrate/cameras/{camera_id}/validate", summary="Check an edited layout (nothing is changed)")
    def validate(camera_id: str, body: LayoutBody) -> dict:
        problems = view.validate(known(camera_id), body.lines, body.zones)
        return {"ok": not problems, "problems": problems}

    @router.post("/api/calibrate/cameras/{camera_id}/preview", dependencies=[Depends(require_token)],
                 summary="Count an unsaved layout on the live tracks beside the real one (needs the bearer token)")
    def preview(camera_id: str, body: LayoutBody) -> dict:
        problems = view.preview(known(camera_id), body.lines, body.zones)
        return {"ok": not problems, "problems": problems}

    @router.put("/api/calibrate/cameras/{camera_id}/layout", dependencies=[Depends(require_token)],
                summary="Validate, save into the site file (with a backup) and apply without a restart (needs the "
                        "bearer token)", responses={422: {"description": "the layout's problems, item by item"},
                                                   409: {"description": "saving is not possible (why)"}})
    def save(camera_id: str, body: LayoutBody, request: Request):
        from roadside.edge.layout_store import LayoutRejected

        client = request.client.host if request.client else None
        try:
            return view.save(known(camera_id), body.lines, body.zones, body.by or "installer", client)
        except LayoutRejected as e:
            return JSONResponse({"detail": f"the layout has {len(e.problems)} problem(s); nothing was saved",
                                 "problems": [p.to_json(e.camera_index) for p in e.problems]}, status_code=422)
        except ConfigError as e:
            return JSONResponse({"detail": str(e), "problems": []}, status_code=409)

    def open_clip(camera_id: str, name: str):
        from roadside.edge.clip_frames import ClipError

        try:
            return view.clip(known(camera_id), name)
        except KeyError:
            raise HTTPException(404, f"no clip {name!r} beside camera {camera_id!r}'s video "
                                     f"(clips: {', '.join(view.clips(camera_id)) or 'none'})") from None
        except ClipError as e:
            raise HTTPException(422, str(e)) from None

    @router.get("/api/calibrate/cameras/{camera_id}/clips", summary="Recorded clips for a manual count")
    def clips(camera_id: str) -> list[str]:
        return view.clips(known(camera_id))

    @router.get("/api/calibrate/cameras/{camera_id}/clips/{name}", summary="A clip's frame rate, size and frames")
    def clip(camera_id: str, name: str) -> dict:
        return open_clip(camera_id, name).describe()

    @router.get("/api/calibrate/cameras/{camera_id}/clips/{name}/frames/{index}.jpg", response_class=Response,
                summary="Frame INDEX (0-based, as decoded sequentially) of a clip",
                responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "past the clip's end (X-Frames: "
                                                                                   "its length)"},
                           422: {"description": "the clip cannot be decoded there (why)"}})
    def clip_frame(camera_id: str, name: str, index: int) -> Response:
        from roadside.edge.clip_frames import ClipError, PastEnd

        frames = open_clip(camera_id, name)
        try:
            jpeg = frames.jpeg(index)
        except PastEnd as e:  # the page learns the clip's length from this
            return JSONResponse({"detail": str(e), "frames": e.frames}, status_code=404,
                                headers={"X-Frames": str(e.frames)})
        except ClipError as e:  # a decoder failure: not the end of the clip
            raise HTTPException(422, str(e)) from None
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600",
                                                                "X-Frames": str(frames.frames or "")})

    @router.post("/api/calibrate/cameras/{camera_id}/manual-counts", dependencies=[Depends(require_token)],
                 summary="Store a manual count in the ground-truth format (needs the bearer token)")
    def manual_count(camera_id: str, body: ManualCountBody) -> dict:
        try:
            return view.save_manual_count(known(camera_id), body)
        except KeyError:
            raise HTTPException(404, f"no clip {body.clip!r} beside camera {camera_id!r}'s video") from None
        except ConfigError as e:
            raise HTTPException(422, str(e)) from None

    @router.post("/api/calibrate/cameras/{camera_id}/live-count", dependencies=[Depends(require_token)],
                 summary="Start a manual count of the live camera for N minutes (needs the bearer token)")
    def start_live_count(camera_id: str, body: LiveCountStart) -> dict:
        try:
            return view.start_live_count(known(camera_id), body.minutes)
        except ConfigError as e:
            raise HTTPException(409, str(e)) from None

    @router.put("/api/calibrate/cameras/{camera_id}/live-count", dependencies=[Depends(require_token)],
                summary="End the live manual count: store it beside what the service counted over the same time "
                        "(needs the bearer token)")
    def finish_live_count(camera_id: str, body: LiveCountBody) -> dict:
        from roadside.edge.manual_count import BadEvent

        try:
            return view.finish_live_count(known(camera_id), body)
        except BadEvent as e:
            raise HTTPException(422, str(e)) from None
        except ConfigError as e:
            raise HTTPException(409, str(e)) from None

    @router.get("/api/calibrate/changes", summary="The change log of saved layouts (who, when, what)")
    def changes() -> list[dict]:
        return view.changes()

    return router


__all__ = ["ASSETS", "CalibrationService", "calibrate_router"]
