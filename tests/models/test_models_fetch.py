"""`roadside models fetch` and `list`: offline mirror, checksum failures, unreachable sources, store integrity."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import socket
import threading
from pathlib import Path

import pytest

from roadside.core.cli import main
from roadside.models.fetch import ModelFetchError, fetch
from roadside.models.store import ChecksumMismatch, ModelStoreError

PICO320 = "picodet_s_320_coco"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def http_mirror(folder: Path):
    """A real HTTP server on loopback serving ``folder``."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_fetch_from_the_offline_mirror_installs_the_verified_file(store, mirror, mirror_manifest):
    res = fetch(PICO320, str(mirror))
    assert res.action == "installed" and res.checksum_from == "product manifest"
    installed = store / f"{PICO320}.onnx"
    assert installed.read_bytes() == (mirror / f"{PICO320}.onnx").read_bytes()
    assert sha(installed) == mirror_manifest[f"{PICO320}.onnx"]
    rec = json.loads((store / f"{PICO320}.json").read_text())
    assert rec["source"] == str(mirror / f"{PICO320}.onnx")
    assert rec["family"] == "picodet" and rec["input_size"] == [320, 320] and rec["precision"] == "fp32"
    assert fetch(PICO320, str(mirror)).action == "already installed"
    assert sorted(p.name for p in store.iterdir()) == [f"{PICO320}.json", f"{PICO320}.onnx"]


def test_corrupt_file_fails_the_checksum_and_leaves_the_store_as_it_was(store, mirror, make_mirror, snapshot):
    fetch("yolox_nano_416", str(mirror))  # something already installed must survive intact
    before = snapshot()
    bad = make_mirror(mirror / f"{PICO320}.onnx")
    data = bytearray((bad / f"{PICO320}.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    (bad / f"{PICO320}.onnx").write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatch, match=r"sha256 is [0-9a-f]{64}, expected e0a3510d.*Nothing was installed"):
        fetch(PICO320, str(bad))
    assert snapshot() == before


def test_truncated_download_of_a_new_version_keeps_the_installed_one(store, mirror, make_mirror, snapshot):
    v1 = mirror / "yolox_nano_416.onnx"
    fetch("site_model", str(v1), user_sha=sha(v1))
    before = snapshot()
    v2 = mirror / "nanodet_m_416.onnx"
    bad = make_mirror()
    (bad / "site_model.onnx").write_bytes(v2.read_bytes()[:100_000])  # the copy broke off
    with pytest.raises(ChecksumMismatch):
        fetch("site_model", str(bad), user_sha=sha(v2))
    assert snapshot() == before
    good = make_mirror()
    (good / "site_model.onnx").write_bytes(v2.read_bytes())
    assert fetch("site_model", str(good), user_sha=sha(v2)).action == "replaced"
    assert sha(store / "site_model.onnx") == sha(v2)


def test_missing_file_and_missing_mirror_are_clear_errors(store, mirror, make_mirror, tmp_path, snapshot):
    empty = make_mirror()
    with pytest.raises(ModelFetchError, match=f"the mirror {empty} has no {PICO320}.onnx"):
        fetch(PICO320, str(empty))
    with pytest.raises(ModelFetchError, match="does not exist .*USB stick"):
        fetch(PICO320, str(tmp_path / "unmounted"))
    with pytest.raises(ModelFetchError, match="no download location .*--from DIR"):
        fetch(PICO320, None)
    assert snapshot() == {}


def test_unreachable_url_is_a_clear_error(store, snapshot):
    with pytest.raises(ModelFetchError, match=r"cannot reach http://127\.0\.0\.1:\d+/.*onnx"):
        fetch(PICO320, f"http://127.0.0.1:{closed_port()}/{PICO320}.onnx")
    assert snapshot() == {}


def test_http_mirror_with_manifest(store, mirror, make_mirror, snapshot):
    folder = make_mirror(mirror / f"{PICO320}.onnx", mirror / "MANIFEST.json")
    with http_mirror(folder) as url:
        res = fetch(PICO320, url)
        assert res.model.record["source"] == f"{url}/{PICO320}.onnx"
        with pytest.raises(ModelFetchError, match="answered 404"):
            fetch("nanodet_m_416", url)
    assert sha(store / f"{PICO320}.onnx") == sha(mirror / f"{PICO320}.onnx")
    assert sorted(snapshot()) == [f"{PICO320}.json", f"{PICO320}.onnx"]


def test_own_model_needs_a_checksum_from_user_or_mirror_manifest(store, mirror, make_mirror):
    src = mirror / "nanodet_m_416.onnx"
    folder = make_mirror()
    (folder / "site_model.onnx").write_bytes(src.read_bytes())
    with pytest.raises(ModelFetchError, match="no checksum is known for site_model: pass --sha256"):
        fetch("site_model", str(folder))
    with pytest.raises(ChecksumMismatch):
        fetch("site_model", str(folder), user_sha="0" * 64)
    assert fetch("site_model", str(folder), user_sha=sha(src)).checksum_from == "--sha256"
    listed = make_mirror(manifest={"models": [{"file": "site_model.onnx", "name": "site_model", "sha256": sha(src)}]})
    (listed / "site_model.onnx").write_bytes(src.read_bytes())
    res = fetch("site_model", str(listed))
    assert res.action == "already installed" and res.checksum_from == "mirror MANIFEST.json"


def test_known_model_cannot_be_overridden_with_another_checksum(store, mirror):
    with pytest.raises(ModelFetchError, match="not a checksum of the known model"):
        fetch(PICO320, str(mirror / "nanodet_m_416.onnx"), user_sha=sha(mirror / "nanodet_m_416.onnx"))
    assert not store.exists() or not any(store.iterdir())


def test_verified_bytes_that_are_no_model_are_refused(store, make_mirror, snapshot):
    folder = make_mirror()
    junk = folder / "junk.onnx"
    junk.write_bytes(b"this is not an onnx model" * 100)
    with pytest.raises(ModelStoreError, match="checksum matches but the file is refused.*Nothing was installed"):
        fetch("junk", str(folder), user_sha=sha(junk))
    assert [n for n in snapshot() if not n.startswith(".")] == [] and snapshot() == {}


def test_cli_fetch_list_and_tampering(store, mirror, capsys):
    assert main(["models", "fetch", PICO320, "--from", str(mirror)]) == 0
    out = capsys.readouterr().out
    assert "installed at" in out and "verified against the product manifest" in out
    assert main(["models", "fetch", "nanodet_m_416", "--from", str(store.parent / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("roadside models fetch: error:") and "does not exist" in err and "\n" not in err

    assert main(["models", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[PICO320]["state"] == "installed, verified"
    assert rows["nanodet_m_416"]["state"].startswith("known, not installed")
    assert rows["yolo11n"]["state"] == "known, not installed (export, then fetch)"

    with open(store / f"{PICO320}.onnx", "r+b") as f:  # someone edits the installed file
        f.seek(1000)
        f.write(b"\x00")
    assert main(["models", "list"]) == 0
    table = capsys.readouterr().out
    line = next(ln for ln in table.splitlines() if ln.startswith(PICO320))
    assert "CHECKSUM MISMATCH" in line
