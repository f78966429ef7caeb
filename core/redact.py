"""Secrets never leave the box in clear: camera URLs carry passwords (``rtsp://user:secret@cam/...``) and they
would otherwise travel into error messages, logs, the health API and MQTT health reasons.

:func:`redact` removes the password of every URL in a text (and ``password=``/``token=``-style query
parameters); :class:`RedactingFilter` applies it to every log record, as a last line of defence behind the
places that build messages from a source.
"""
from __future__ import annotations

import logging
import re

MASK = "**********"

#: scheme://user:password@  (the password is anything up to the last '@' before the host part)
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^\s/:@]*):(?P<pw>[^\s/]*)@")
#: ?password=...&token=... in URLs
_SECRET_PARAM = re.compile(r"(?P<key>[?&;](?:password|passwd|pwd|pass|token|access_token|apikey|api_key|key|secret|auth|"
                           r"signature|sig)=)[^&\s#'\"]*", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every URL password and secret query parameter replaced by ``**********``."""
    if "://" not in text and "=" not in text:
        return text
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    return _SECRET_PARAM.sub(lambda m: f"{m['key']}{MASK}", text)


class RedactingFilter(logging.Filter):
    """Redacts the formatted message of every record (its arguments are merged into it first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler's own error reporting
            return True
        clean = redact(msg)
        if clean != msg or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Add :class:`RedactingFilter` to every handler of ``logger`` (default: the root logger), once."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


__all__ = ["MASK", "RedactingFilter", "install_log_redaction", "redact"]
