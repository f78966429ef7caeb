"""One file serves an installer's replay, audit and service: the vision configuration of one camera, from
either kind of configuration file.

``roadside edge replay``, ``roadside edge bench`` and ``roadside calibrate evaluate`` take ``--config`` as

* a vision file: ``lines:``, ``zones:``, ``detector:``, ``tracker:``, ``counting:`` (a file holding only
  ``lines:`` is enough), read as :class:`~roadside.edge.config.VisionConfig`; or
* the edge service's site file (``site:``, ``cameras:``, ...), read as
  :class:`~roadside.edge.service_config.EdgeConfig` (relative paths relative to the file, as for
  ``roadside edge run``), of which one camera's lines, zones and shared or own detector, tracker and
  counting settings are used: ``--camera ID``, or the only camera.
"""
from __future__ import annotations

from pathlib import Path

from roadside.core.config import parse_config, read_yaml
from roadside.core.errors import ConfigError
from roadside.edge.config import VisionConfig
from roadside.edge.service_config import EdgeConfig, edge_config_from

#: keys that only a site file has at its top level
SITE_KEYS = frozenset(EdgeConfig.model_fields) - frozenset(VisionConfig.model_fields)


def is_site_file(data: object) -> bool:
    return isinstance(data, dict) and not SITE_KEYS.isdisjoint(data)


def load_vision_config(path: str | Path | None, camera: str | None = None) -> VisionConfig:
    """The vision configuration in ``path`` (None: the defaults); for a site file, that of ``camera``
    (default: its only camera). ConfigError naming the file and the problem."""
    if path is None:
        if camera is not None:
            raise ConfigError(f"--camera {camera}: cameras are chosen in a site file; give it with --config")
        return VisionConfig()
    data = read_yaml(path)
    if not is_site_file(data):
        if camera is not None:
            raise ConfigError(f"{path}: --camera {camera}: this is a vision file (lines, zones, detector, ...), "
                              "not a site file with cameras")
        return parse_config(data, VisionConfig, str(Path(path)))
    site = edge_config_from(data, path)
    ids = [c.id for c in site.cameras]
    if camera is None:
        if len(ids) > 1:
            raise ConfigError(f"{path}: the site file has {len(ids)} cameras ({', '.join(ids)}); choose one with "
                              "--camera")
        camera = ids[0]
    if camera not in ids:
        raise ConfigError(f"{path}: no camera {camera!r} in the site file (cameras: {', '.join(ids)})")
    return site.vision(site.camera(camera))


__all__ = ["SITE_KEYS", "is_site_file", "load_vision_config"]
