"""The error hierarchy of the product.

Every error that is the user's input rather than a bug derives from :class:`RoadsideError`; the CLI prints
it as one clear line (``roadside <command>: error: ...``) and exits with status 2. Each package derives its
own errors from these (``VideoError``, ``ModelNotFound``, ``BrokerError``, ...), so callers can catch a
whole family or one kind.
"""


class RoadsideError(Exception):
    """A problem with an input (file, configuration, model, video, broker) that the message explains."""


class ConfigError(RoadsideError, ValueError):
    """A configuration file or value is invalid; the message names the place and the problem."""


__all__ = ["ConfigError", "RoadsideError"]
