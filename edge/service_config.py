"""Configuration of the edge service (``roadside edge run``): site, broker, health API, outbox and cameras.

Built on the vision-core models of :mod:`roadside.edge.config` (same strictness: unknown keys are errors
that name their key path). Each camera has its own source, count lines and zones; the detector, tracker and
counting settings are shared and may be replaced per camera.

Relative paths (camera files, model files, TLS files, ``state_dir``) are relative to the folder of the
configuration file; for the built-in default configuration (``edge/defaults/edge.yaml``), relative to
the current working directory (the checkout root in development).
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from roadside.core.config import Identifier, Strict, check_ordered, parse_config, parse_yaml, read_yaml
from roadside.core.mqtt import MqttConfig
from roadside.core.paths import edge_state_dir
from roadside.core.redact import redact
from roadside.core.topics import CONTROLLER, Topics
from roadside.edge.config import (CountingConfig, DetectorConfig, LineConfig, LowLightConfig, TrackerConfig, VisionConfig,
                                  ZoneConfig)

DEFAULT_CONFIG_NAME = "edge.yaml"


class ApiConfig(Strict):
    """The local health API (HTTP)."""

    enabled: bool = Field(True, description="serve the health API")
    host: str = Field("127.0.0.1", description="address to listen on; expose it on purpose (`0.0.0.0`) behind a "
                                               "firewall or a reverse proxy")
    port: int = Field(8080, ge=1, le=65535, description="port to listen on")
    token: SecretStr | None = Field(None, description="bearer token (16+ characters) for the endpoints that change "
                                                      "state; without one the API is read-only (never served)")

    @field_validator("token")
    @classmethod
    def _token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < 16:
            raise ValueError("the API token must be at least 16 characters")
        return v


class OutboxConfig(Strict):
    """The durable store-and-forward queue of counts messages (SQLite, in ``state_dir``)."""

    max_bytes: int = Field(64 * 1024 * 1024, ge=1024, le=64 * 1024**3, description="beyond this size (bytes; default 64 MiB) the "
                                                                  "oldest counts messages are dropped (counted, "
                                                                  "recorded)")
    max_age_s: float = Field(30 * 24 * 3600.0, ge=60, le=366 * 24 * 3600.0,
                             description="counts messages older than this (s; default 30 days; 60 s to a year) are "
                                         "dropped (counted, recorded)")


class SourceSettings(Strict):
    """How live sources are watched and reconnected (shared by all cameras)."""

    stall_timeout_s: float = Field(2.0, gt=0, le=120, description="no new frame for this long (s): the stream is "
                                                                  "stalled (reported, then reconnected)")
    open_timeout_s: float = Field(20.0, gt=0, le=600, description="connecting to a source and getting its first "
                                                                  "frame may take this long (s)")
    backoff_min_s: float = Field(0.5, gt=0, le=60, description="source reconnect backoff starts here (s), doubling "
                                                               "with random jitter (50-100 %), forever ...")
    backoff_max_s: float = Field(30.0, gt=0, le=3600, description="... up to this (s)")
    frozen_after_s: float = Field(3.0, gt=0, le=3600, description="identical images for this long (s): degraded "
                                                                  "(`frozen`)")
    dark_level: float = Field(12.0, ge=0, le=255, description="mean brightness (0-255) below which an image is "
                                                              "black (degraded: `black image`)")
    bright_level: float = Field(243.0, ge=0, le=255, description="mean brightness (0-255) above which an image is "
                                                                 "blinded (degraded: `blinded image`)")
    bad_image_after_s: float = Field(2.0, ge=0, le=3600, description="seconds a black or blinded image must last "
                                                                     "before it is reported")

    @model_validator(mode="after")
    def _order(self) -> "SourceSettings":
        check_ordered(self, ("backoff_min_s", "backoff_max_s"))
        if self.dark_level >= self.bright_level:
            raise ValueError("dark_level must be below bright_level")
        return self


def is_url(source: str) -> bool:
    return "://" in source


def is_device(source: str) -> bool:
    return source.isdigit()


class CameraConfig(Strict):
    """One camera: its source, count lines and zones, and optionally its own vision settings."""

    id: Identifier = Field(description="camera id (letters, digits, `_.-`), unique; part of its topics")
    source: str = Field(min_length=1, description="a video file, an `rtsp://` or `http(s)://` stream URL (e.g. "
                                                  "MJPEG), or a local camera device index (`\"0\"`)")
    loop: bool = Field(False, description="files: start again at the end (a fake live camera); otherwise the "
                                          "camera ends with its file")
    realtime: bool = Field(True, description="files: deliver frames at the file's frame rate, as a camera would; "
                                             "false: every frame, as fast as processed")
    rtsp_transport: Literal["tcp", "udp"] | None = Field(None, description="RTSP: transport of the media; null: "
                                                                           "the decoder's choice (TCP)")
    fps: float | None = Field(None, gt=0, le=1000, description="frame rate to assume when a stream reports none")
    lines: list[LineConfig] = Field(default_factory=list, description="count lines, in source-frame pixels (as in "
                                                                      "`roadside edge replay`)")
    zones: list[ZoneConfig] = Field(default_factory=list, description="zones, in source-frame pixels")
    detector: DetectorConfig | None = Field(None, description="this camera's own detector settings, replacing "
                                                              "the whole shared `detector` section")
    tracker: TrackerConfig | None = Field(None, description="this camera's own tracker settings, replacing the "
                                                            "whole shared `tracker` section")
    counting: CountingConfig | None = Field(None, description="this camera's own counting settings, replacing "
                                                              "the whole shared `counting` section")
    lowlight: LowLightConfig | None = Field(None, description="this camera's own night path settings, replacing "
                                                              "the whole shared `lowlight` section")

    @model_validator(mode="after")
    def _unique_ids(self) -> "CameraConfig":
        for what, items in (("line", self.lines), ("zone", self.zones)):
            ids = [it.id for it in items]
            for i in ids:
                if ids.count(i) > 1:
                    raise ValueError(f"camera {self.id!r}: {what} id {i!r} is used twice")
        return self

    @property
    def kind(self) -> str:
        if is_device(self.source):
            return "device"
        if is_url(self.source):
            return self.source.split("://", 1)[0].lower()
        return "file"


class EdgeConfig(Strict):
    """One edge box: its cameras and where their counts go."""

    site: Identifier = Field(description="site name (letters, digits, `_.-`): part of the topic prefix and the "
                                         "MQTT client id")
    device: Identifier = Field(description="this box's name under the site (not `controller`): part of its topics "
                                           "and the MQTT client id")
    state_dir: str | None = Field(None, description="where the outbox database lives; null: "
                                                    "`$ROADSIDE_HOME/edge/<site>-<device>` (`ROADSIDE_HOME` defaults "
                                                    "to `~/.local/share/roadside`)")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="the broker")
    api: ApiConfig = Field(default_factory=ApiConfig, description="the health API")
    outbox: OutboxConfig = Field(default_factory=OutboxConfig, description="bounds of the durable counts queue")
    sources: SourceSettings = Field(default_factory=SourceSettings, description="how live sources are watched and "
                                                                                "reconnected (all cameras)")
    health_interval_s: float = Field(10.0, ge=0.5, le=3600, description="seconds between health messages of each "
                                                                        "camera (sent at once on a change)")
    detector: DetectorConfig = Field(default_factory=DetectorConfig, description="the detector, shared by all "
                                                                                 "cameras")
    tracker: TrackerConfig = Field(default_factory=TrackerConfig, description="the tracker, shared by all cameras")
    counting: CountingConfig = Field(default_factory=CountingConfig, description="counting and interval bins, "
                                                                                 "shared by all cameras")
    lowlight: LowLightConfig = Field(default_factory=LowLightConfig, description="the night path (headlights as "
                                                                                 "vehicles on dark frames), shared "
                                                                                 "by all cameras")
    cameras: list[CameraConfig] = Field(default_factory=list, description="the cameras; none on a fresh box, whose "
                                                                       "installer adds them on the calibration "
                                                                       "page")
    phases: list[Identifier] = Field(default_factory=list, description="the signal controller's phase names at "
                                                                       "this intersection; a line's or zone's "
                                                                       "`phase` must be one of them")

    @field_validator("cameras")
    @classmethod
    def _unique_cameras(cls, v: list[CameraConfig]) -> list[CameraConfig]:
        seen: set[str] = set()
        for cam in v:
            if cam.id in seen:
                raise ValueError(f"camera id {cam.id!r} is used twice")
            seen.add(cam.id)
        return v

    @model_validator(mode="after")
    def _layout_references(self) -> "EdgeConfig":
        from roadside.edge.layout import validate_layout

        problems = []
        for ci, cam in enumerate(self.cameras):
            layout = validate_layout(cam.lines, cam.zones, categories=self.vision(cam).detector.classes,
                                     phases=self.phases)
            problems += [p.located(ci) for p in layout.problems]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @field_validator("device")
    @classmethod
    def _not_controller(cls, v: str) -> str:
        if v == CONTROLLER:
            raise ValueError(f"{CONTROLLER!r} is the signal controller's name under the site prefix; "
                             "choose another device name")
        return v

    @property
    def topics(self) -> Topics:
        return Topics.for_site(self.site, self.mqtt.prefix)

    @property
    def topic_prefix(self) -> str:
        """This device's topics are below this (``<site prefix>/<device>``)."""
        return self.topics.device(self.device)

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"roadside-{self.site}-{self.device}"

    def camera(self, camera_id: str) -> CameraConfig:
        for cam in self.cameras:
            if cam.id == camera_id:
                return cam
        raise KeyError(camera_id)

    def vision(self, cam: CameraConfig) -> VisionConfig:
        """The vision-core configuration of one camera (its lines and zones, shared or own settings)."""
        return VisionConfig(lines=cam.lines, zones=cam.zones, detector=cam.detector or self.detector,
                            tracker=cam.tracker or self.tracker, counting=cam.counting or self.counting,
                            lowlight=cam.lowlight or self.lowlight)

    def state_path(self) -> Path:
        if self.state_dir:
            return Path(self.state_dir).expanduser()
        return edge_state_dir(self.site, self.device)

    def redacted(self) -> dict:
        """The configuration as JSON data with secrets (password, API token, passwords in stream URLs)
        replaced by ``**********``."""
        data = self.model_dump(mode="json")
        for cam in data["cameras"]:
            cam["source"] = redact(cam["source"])
        return data


def _looks_like_path(ref: str) -> bool:
    return "/" in ref or os.sep in ref or ref.endswith(".onnx")


def _resolve(base: Path, p: str | None) -> str | None:
    if p is None:
        return None
    q = Path(p).expanduser()
    return str(q if q.is_absolute() else base / q)


def _with_paths(config: EdgeConfig, base: Path) -> EdgeConfig:
    """Make the configuration's relative paths relative to ``base``."""

    def det(d: DetectorConfig | None) -> DetectorConfig | None:
        if d is None or d.model is None or not _looks_like_path(d.model):
            return d
        return d.model_copy(update={"model": _resolve(base, d.model)})

    cams = []
    for cam in config.cameras:
        upd: dict = {"detector": det(cam.detector)}
        if cam.kind == "file":
            upd["source"] = _resolve(base, cam.source)
        cams.append(cam.model_copy(update=upd))
    return config.model_copy(update={
        "cameras": cams, "detector": det(config.detector), "mqtt": config.mqtt.relative_to(base),
        "state_dir": _resolve(base, config.state_dir),
    })


def default_config_text() -> str:
    return resources.files("roadside.edge").joinpath("defaults", DEFAULT_CONFIG_NAME).read_text(encoding="utf-8")


def load_edge_config(path: str | Path | None = None) -> EdgeConfig:
    """Load a site configuration (``None``: the built-in default); raise ConfigError naming key and problem."""
    if path is None:
        data = parse_yaml(default_config_text(), f"built-in default configuration ({DEFAULT_CONFIG_NAME})")
        config = parse_config(data, EdgeConfig, f"built-in default configuration ({DEFAULT_CONFIG_NAME})")
        return _with_paths(config, Path.cwd())
    return edge_config_from(read_yaml(path), path)


def edge_config_from(data: object, path: str | Path) -> EdgeConfig:
    """Validate the already-read content of the site file at ``path`` (its relative paths are relative to it)."""
    config = parse_config(data, EdgeConfig, str(Path(path)))
    return _with_paths(config, Path(path).resolve().parent)


def startup_problems(config: EdgeConfig, model_override: str | None = None) -> list[str]:
    """Problems the service would meet at start-up beyond the schema, each naming its key: a camera file that
    does not exist, a loop on a live source, a model that is not installed, missing TLS files. ``roadside
    edge check`` reports them, and the service refuses to start with them (they would never heal)."""
    from roadside.core.errors import RoadsideError
    from roadside.models.store import resolve_model

    problems = []
    model_errors: dict[str, list[str]] = {}  # one line per missing model, naming the cameras that need it
    for cam in config.cameras:
        if cam.kind == "file" and not Path(cam.source).is_file():
            problems.append(f"cameras[{cam.id}].source: no such file: {cam.source}")
        if cam.loop and cam.kind != "file":
            problems.append(f"cameras[{cam.id}].loop: only video files can loop (the source is a {cam.kind} source)")
        try:
            resolve_model(model_override or config.vision(cam).detector.model)
        except RoadsideError as e:
            model_errors.setdefault(str(e), []).append(cam.id)
    for err, cams in model_errors.items():
        problems.append(f"cameras[{'], cameras['.join(cams)}] detector.model: {err}")
    tls = config.mqtt.tls
    if tls is not None:
        for key in ("ca_file", "cert_file", "key_file"):
            p = getattr(tls, key)
            if p is not None and not Path(p).is_file():
                problems.append(f"mqtt.tls.{key}: no such file: {p}")
    return problems


__all__ = ["ApiConfig", "CameraConfig", "EdgeConfig", "OutboxConfig", "SourceSettings", "default_config_text",
           "edge_config_from", "load_edge_config", "startup_problems"]
