"""The local model store: verified ONNX files under ``$ROADSIDE_HOME/models``, and model resolution.

Layout: ``NAME.onnx`` (the model) and ``NAME.json`` (where it came from, its sha256, when it was installed).
Files only ever appear complete: an install writes a hidden temporary file in the store directory, checks
its sha256, flushes it to disk and renames it into place. Anything that goes wrong leaves the store as it
was.

Location: ``$ROADSIDE_MODELS_DIR`` if set, else ``$ROADSIDE_HOME/models`` with ``ROADSIDE_HOME`` defaulting
to ``~/.local/share/roadside``.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from roadside.core.errors import RoadsideError
from roadside.core.paths import models_dir
from roadside.models.catalog import NAME_PATTERN, KnownModel, known_models

#: The product's default detector (resolved when the configuration names no model).
DEFAULT_MODEL = "picodet_s_416_coco"
#: Where the development checkout's offline mirror is, relative to the project root.
DEV_MIRROR = "../shared/models"

_PARTIAL_SUFFIX = ".partial"
_STALE_PARTIAL_S = 3600.0


class ModelNotFound(RoadsideError, LookupError):
    """A model reference names no file, no installed model and no known model; or a known one that is
    not installed (the message says how to get it)."""


class ModelStoreError(RoadsideError):
    """The store cannot be written, or a file failed verification while being installed."""


class ChecksumMismatch(ModelStoreError):
    """The bytes received are not the model that was asked for."""


def store_dir() -> Path:
    return models_dir()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class InstalledModel:
    name: str
    path: Path
    #: the install record (sha256, source, installed_at, ...); empty when NAME.json is missing
    record: dict

    @property
    def recorded_sha256(self) -> str | None:
        return self.record.get("sha256")


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise ModelStoreError(
            f"{name!r} is not a valid model name (letters, digits, '_', '.', '-'; at most 64 characters, "
            "starting with a letter or digit)"
        )
    return name


def installed_models() -> list[InstalledModel]:
    d = store_dir()
    if not d.is_dir():
        return []
    out = []
    for p in sorted(d.glob("*.onnx")):
        if p.name.startswith("."):
            continue
        out.append(InstalledModel(p.stem, p, read_record(p.with_suffix(".json"))))
    return out


def read_record(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def installed_path(name: str) -> Path | None:
    p = store_dir() / f"{name}.onnx"
    return p if NAME_PATTERN.match(name) and p.is_file() else None


def how_to_get(known: KnownModel) -> str:
    """The instructions printed when a known model is not installed."""
    if known.export and not known.sha256:
        return (
            f"model {known.name!r} is not installed in the model store ({store_dir()}). It is made from Ultralytics "
            f"weights: run `{known.export} --out DIR` (needs the 'export' extra), then "
            f"`roadside models fetch {known.name} --from DIR`"
        )
    return (
        f"model {known.name!r} is not installed in the model store ({store_dir()}). Install it with "
        f"`roadside models fetch {known.name} --from DIR`, where DIR is an offline mirror holding {known.file} "
        f"(a USB stick or an internal share; in a development checkout: {DEV_MIRROR})"
    )


def resolve_model(ref: str | os.PathLike | None) -> Path:
    """Turn a model reference into an ONNX file path.

    ``None``: the product's default model (:data:`DEFAULT_MODEL`) from the store. A path to an existing file:
    that file. A name: the installed model of that name. Raises :class:`ModelNotFound` with instructions.
    """
    name = DEFAULT_MODEL if ref is None else os.fspath(ref)
    if ref is not None:
        p = Path(name).expanduser()
        if p.is_file():
            return p
        if p.exists():
            raise ModelNotFound(f"{name}: is not a file (expected an .onnx model file or a model name)")
        if "/" in name or os.sep in name or name.endswith(".onnx"):
            if p.name.endswith(".onnx") and p.parent == Path(".") and installed_path(p.stem):
                return installed_path(p.stem)  # type: ignore[return-value]
            raise ModelNotFound(f"model file not found: {name}")
    found = installed_path(name)
    if found:
        return found
    known = known_models().get(name)
    if known:
        raise ModelNotFound(how_to_get(known))
    installed = ", ".join(m.name for m in installed_models()) or "none"
    raise ModelNotFound(
        f"{name!r} is not a model file, not installed in {store_dir()} (installed: {installed}) and not a known model "
        f"(known: {', '.join(known_models())}); give a path to an .onnx file, or install a model with "
        f"`roadside models fetch NAME --from DIR` ({DEV_MIRROR} in development)"
    )


def _remove_stale_partials(d: Path) -> None:
    now = time.time()
    for p in d.glob(f".*{_PARTIAL_SUFFIX}"):
        try:
            if now - p.stat().st_mtime > _STALE_PARTIAL_S:
                p.unlink()
        except OSError:
            pass


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomically(target: Path, chunks: Iterable[bytes]) -> tuple[Path, str, int]:
    """Write ``chunks`` to a hidden temporary file beside ``target``; return (temp path, sha256, size)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=_PARTIAL_SUFFIX)
    h, size = hashlib.sha256(), 0
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it private; installed models are readable like any package file
        with os.fdopen(fd, "wb") as f:
            for block in chunks:
                h.update(block)
                f.write(block)
                size += len(block)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp), h.hexdigest(), size


def install(
    name: str,
    chunks: Iterable[bytes],
    accepted_sha256: Iterable[str],
    source: str,
    validate: Callable[[Path], dict] | None = None,
    extra_record: dict | None = None,
) -> InstalledModel:
    """Install a model into the store from a stream of bytes, all or nothing.

    The bytes must hash to one of ``accepted_sha256`` (at least one is required). ``validate`` may inspect the
    verified temporary file (e.g. load it) and return fields for the record, or raise to refuse it.
    """
    check_name(name)
    accepted = {s.lower() for s in accepted_sha256}
    if not accepted:
        raise ModelStoreError(f"{name}: no sha256 checksum to verify against; refusing to install an unverified model")
    d = store_dir()
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ModelStoreError(f"cannot create the model store {d}: {e}") from None
    _remove_stale_partials(d)
    target = d / f"{name}.onnx"
    try:
        tmp, digest, size = _write_atomically(target, chunks)
    except OSError as e:
        raise ModelStoreError(f"cannot write into the model store {d}: {e}") from None
    try:
        if digest not in accepted:
            raise ChecksumMismatch(
                f"{name} from {source}: sha256 is {digest}, expected {' or '.join(sorted(accepted))}; the file is "
                "corrupt, incomplete or a different model. Nothing was installed"
            )
        record = {"name": name, "file": target.name, "sha256": digest, "size": size, "source": source,
                  "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if validate is not None:
            try:
                record.update(validate(tmp))
            except RoadsideError as e:
                raise ModelStoreError(f"{name} from {source}: the checksum matches but the file is refused: {e}. Nothing was installed") from None
        record.update(extra_record or {})
        rec_tmp, _, _ = _write_atomically(target.with_suffix(".json"), [json.dumps(record, indent=1).encode() + b"\n"])
        try:
            os.replace(tmp, target)
            os.replace(rec_tmp, target.with_suffix(".json"))
        finally:
            rec_tmp.unlink(missing_ok=True)
        _fsync_dir(d)
    except OSError as e:
        raise ModelStoreError(f"cannot install {name} into the model store {d}: {e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return InstalledModel(name, target, record)
