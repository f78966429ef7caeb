"""What every router of the edge service's API shares: the one bearer-token check (``api.token``) and the
404 for an unknown camera."""
from __future__ import annotations

import secrets
from typing import Callable

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr


def token_guard(token: SecretStr | None) -> Callable[..., None]:
    """A FastAPI dependency: 403 when no token is configured (the API is read-only), 401 without the right one."""
    bearer = HTTPBearer(auto_error=False, description="api.token from the configuration")

    def require_token(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if token is None:
            raise HTTPException(403, "the API is read-only: no api.token is configured")
        if cred is None or not secrets.compare_digest(cred.credentials.encode(), token.get_secret_value().encode()):
            raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})

    return require_token


def known_camera(cameras: list[str], camera_id: str) -> str:
    """``camera_id`` when it is one of ``cameras``; otherwise a 404 that lists them."""
    if camera_id not in cameras:
        raise HTTPException(404, f"no camera {camera_id!r} (cameras: {', '.join(cameras) or 'none'})")
    return camera_id


__all__ = ["known_camera", "token_guard"]
