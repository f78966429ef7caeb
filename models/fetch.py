"""``roadside models fetch``: install a model into the local store from an offline mirror, a file or a URL.

A mirror is a folder (USB stick, mounted share; in development ``../shared/models``) or an http(s) base URL
holding ``FILE.onnx`` files and, optionally, a ``MANIFEST.json`` (``{"models": [{"file", "sha256", "name"?}]}``,
the format of ``../shared/models/MANIFEST.json`` and of what ``roadside models export`` writes).

Which checksum is trusted: a known model's checksums from the product's own manifest (the bytes must be
exactly that model); otherwise ``--sha256`` from the user; otherwise the mirror's ``MANIFEST.json`` entry,
which only guards against corruption on the way (it travels with the file) and is recorded as such.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from roadside.models.catalog import SHA256_PATTERN, KnownModel, known_models
from roadside.models.store import (DEV_MIRROR, InstalledModel, ModelStoreError, check_name, install, installed_path,
                                   read_record, sha256_file)

CHUNK = 1 << 20
URL_TIMEOUT_S = 30.0


class ModelFetchError(ModelStoreError):
    """The source cannot be read, does not hold the model, or no checksum is known to verify it."""


@dataclass(frozen=True)
class Located:
    """Where the model's bytes are and which checksums they must have."""

    location: str  # file path or URL
    accepted: tuple[str, ...]
    checksum_from: str  # "product manifest", "--sha256", "mirror MANIFEST.json"


def _is_url(source: str) -> bool:
    return urllib.parse.urlparse(source).scheme in ("http", "https")


def _open_url(url: str):
    try:
        return urllib.request.urlopen(url, timeout=URL_TIMEOUT_S)  # noqa: S310 (http/https only, checked)
    except urllib.error.HTTPError as e:
        raise ModelFetchError(f"{url}: the server answered {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ModelFetchError(f"cannot reach {url}: {reason}; check the address and the network, or use --from DIR with an offline copy") from None


def _read_mirror_manifest(source: str) -> list[dict]:
    """The entries of the mirror's MANIFEST.json, or [] when it has none."""
    if _is_url(source):
        url = source.rstrip("/") + "/MANIFEST.json"
        try:
            with _open_url(url) as r:
                text = r.read().decode("utf-8")
        except ModelFetchError as e:
            if "answered 404" in str(e):
                return []
            raise
    else:
        p = Path(source) / "MANIFEST.json"
        if not p.is_file():
            return []
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ModelFetchError(f"{p}: cannot read the mirror manifest: {e}") from None
    try:
        doc = json.loads(text)
        entries = doc["models"]
        if not isinstance(entries, list) or not all(isinstance(e, dict) and "file" in e for e in entries):
            raise ValueError("'models' must be a list of objects with a 'file'")
    except (ValueError, KeyError, TypeError) as e:
        raise ModelFetchError(f"{source}/MANIFEST.json: not a valid mirror manifest: {e}") from None
    return entries


def _mirror_entry(entries: list[dict], name: str, known: KnownModel | None) -> dict | None:
    for e in entries:
        f = str(e["file"])
        if e.get("name") == name or f == f"{name}.onnx" or (known and f == known.file):
            return e
    return None


def _accepted(name: str, known: KnownModel | None, user_sha: str | None, mirror_sha: str | None, where: str) -> tuple[tuple[str, ...], str]:
    if user_sha is not None:
        user_sha = user_sha.strip().lower()
        if not SHA256_PATTERN.match(user_sha):
            raise ModelFetchError(f"--sha256 {user_sha!r}: not a sha256 checksum (64 hexadecimal digits)")
    if known and known.sha256:
        if user_sha and user_sha not in known.sha256:
            raise ModelFetchError(
                f"--sha256 {user_sha} is not a checksum of the known model {name} ({', '.join(known.sha256)}); "
                "install your own file under another name"
            )
        return known.sha256, "product manifest"
    if user_sha:
        return (user_sha,), "--sha256"
    if mirror_sha:
        if not SHA256_PATTERN.match(str(mirror_sha).lower()):
            raise ModelFetchError(f"{where}/MANIFEST.json: entry for {name} has a malformed sha256 {mirror_sha!r}")
        return (str(mirror_sha).lower(),), "mirror MANIFEST.json"
    hint = f" (it is made with `{known.export} --out DIR`, which prints the checksum)" if known and known.export else ""
    raise ModelFetchError(
        f"no checksum is known for {name}{hint}: pass --sha256 HEX from whoever produced the file, or fetch from a "
        "mirror whose MANIFEST.json lists it"
    )


def locate(name: str, source: str | None, user_sha: str | None = None) -> Located:
    """Find the model's bytes in ``source`` and the checksums they must match (no bytes are read yet)."""
    known = known_models().get(name)
    if source is None:
        if known and known.url:
            acc, how = _accepted(name, known, user_sha, None, known.url)
            return Located(known.url, acc, how)
        what = f"the known model {name}" if known else f"{name} (not a known model)"
        raise ModelFetchError(
            f"no download location for {what}: use --from DIR with an offline mirror (USB stick, internal share; "
            f"in development {DEV_MIRROR}), --from URL, or --from FILE.onnx"
        )
    if _is_url(source):
        if source.endswith(".onnx"):
            acc, how = _accepted(name, known, user_sha, None, source)
            return Located(source, acc, how)
        entry = _mirror_entry(_read_mirror_manifest(source), name, known)
        file = entry["file"] if entry else (known.file if known else f"{name}.onnx")
        acc, how = _accepted(name, known, user_sha, entry.get("sha256") if entry else None, source)
        return Located(source.rstrip("/") + "/" + urllib.parse.quote(file), acc, how)
    p = Path(source).expanduser()
    if p.is_file():
        acc, how = _accepted(name, known, user_sha, None, str(p.parent))
        return Located(str(p), acc, how)
    if not p.exists():
        raise ModelFetchError(f"the source {source} does not exist (is the USB stick or share mounted?)")
    if not p.is_dir():
        raise ModelFetchError(f"the source {source} is neither a folder nor a file")
    entry = _mirror_entry(_read_mirror_manifest(str(p)), name, known)
    candidates = [entry["file"]] if entry else ([known.file] if known else []) + [f"{name}.onnx"]
    for file in candidates:
        if (p / file).is_file():
            acc, how = _accepted(name, known, user_sha, entry.get("sha256") if entry else None, str(p))
            return Located(str(p / file), acc, how)
    raise ModelFetchError(f"the mirror {p} has no {' or '.join(dict.fromkeys(candidates))} for model {name}")


def _read_chunks(location: str) -> Iterator[bytes]:
    if _is_url(location):
        with _open_url(location) as r:
            while True:
                try:
                    block = r.read(CHUNK)
                except OSError as e:
                    raise ModelFetchError(f"{location}: the download broke off: {e}") from None
                if not block:
                    return
                yield block
    else:
        try:
            with open(location, "rb") as f:
                while block := f.read(CHUNK):
                    yield block
        except OSError as e:
            raise ModelFetchError(f"{location}: cannot read: {e}") from None


@dataclass(frozen=True)
class FetchResult:
    model: InstalledModel
    #: "installed", "replaced" or "already installed"
    action: str
    checksum_from: str


def fetch(name: str, source: str | None, user_sha: str | None = None) -> FetchResult:
    """Install ``name`` from ``source`` into the store, verified; the store is unchanged on any error."""
    from roadside.models.inspect_model import validate_for_store

    check_name(name)
    loc = locate(name, source, user_sha)
    current = installed_path(name)
    if current is not None and sha256_file(current) in loc.accepted:
        return FetchResult(InstalledModel(name, current, read_record(current.with_suffix(".json"))), "already installed", loc.checksum_from)
    model = install(name, _read_chunks(loc.location), loc.accepted, loc.location, validate=validate_for_store,
                    extra_record={"checksum_from": loc.checksum_from})
    return FetchResult(model, "replaced" if current is not None else "installed", loc.checksum_from)
