"""What ``roadside models list`` shows: installed models (checksums re-verified) and known models."""
from __future__ import annotations

from roadside.models.catalog import known_models
from roadside.models.store import installed_models, sha256_file


def installed_state(recorded: str | None, actual: str, accepted: tuple[str, ...]) -> str:
    if accepted and actual not in accepted:
        return "installed, CHECKSUM MISMATCH (not the known model: fetch it again)"
    if recorded is None:
        return "installed, no install record" + (" (matches known checksum)" if actual in accepted else "")
    if recorded != actual:
        return "installed, MODIFIED since install (fetch it again)"
    return "installed, verified"


def list_models() -> list[dict]:
    """One row per installed or known model: name, state, family, input, license, sha256, path."""
    known = known_models()
    rows = []
    seen = set()
    for m in installed_models():
        k = known.get(m.name)
        actual = sha256_file(m.path)
        rows.append({
            "name": m.name,
            "state": installed_state(m.recorded_sha256, actual, k.sha256 if k else ()),
            "family": m.record.get("family") or (k.family if k else None),
            "input": m.record.get("input_size") or (list(k.input) if k else None),
            "license": k.license if k else m.record.get("license"),
            "sha256": actual,
            "path": str(m.path),
            "source": m.record.get("source"),
        })
        seen.add(m.name)
    for k in known.values():
        if k.name in seen:
            continue
        how = "export, then fetch" if k.export and not k.sha256 else "fetch --from a mirror"
        rows.append({"name": k.name, "state": f"known, not installed ({how})", "family": k.family, "input": list(k.input),
                     "license": k.license, "sha256": None, "path": None, "source": None})
    return rows
