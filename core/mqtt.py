"""The one MQTT configuration of every process (edge, controller, SUMO harness, tests).

``MqttConfig`` says where the broker is, how to authenticate (username/password, TLS, client certificate),
the site's topic prefix (see :mod:`roadside.core.topics`) and how to reconnect.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from roadside.core.config import Strict, check_ordered
from roadside.core.topics import check_prefix


def split_address(entry: str, where: str = "broker") -> tuple[str, int]:
    """``host:port`` (or ``[v6addr]:port``) -> (host, port); ValueError naming ``where`` otherwise."""
    host, sep, port = entry.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535 or any(c.isspace() for c in host):
        raise ValueError(f"{where}: {entry!r} is not host:port (e.g. 10.0.0.5:1883 or [fd00::5]:8883)")
    return host, int(port)


def check_addresses(entries: list[str], key: str) -> list[str]:
    """A list of ``host:port`` entries (``key[i]`` named in the error of a bad one)."""
    for i, entry in enumerate(entries):
        split_address(entry, f"{key}[{i}]")
    return entries


class TlsConfig(Strict):
    """TLS to the broker. Without ``ca_file`` the system's trusted CAs verify the broker."""

    ca_file: str | None = Field(None, description="CA certificate (PEM) that signed the broker's certificate")
    cert_file: str | None = Field(None, description="client certificate (PEM), for brokers that authenticate "
                                                    "clients by certificate; needs key_file")
    key_file: str | None = Field(None, description="private key of cert_file")
    insecure: bool = Field(False, description="skip the check that the broker's certificate names the host "
                                              "(testing only)")

    @model_validator(mode="after")
    def _pair(self) -> "TlsConfig":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (a client certificate needs its key)")
        return self


class MqttConfig(Strict):
    """The MQTT broker and how to talk to it."""

    host: str = Field("127.0.0.1", description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="broker port (8883 is the usual TLS port)")
    brokers: list[str] = Field(default_factory=list, max_length=64,
                               description="the nodes of a clustered broker, `host:port` each (`[v6addr]:port`); when "
                                           "given, the client connects to the first and moves to the next one whenever "
                                           "a connection attempt fails or a connection is lost; host and port are then "
                                           "not given")
    prefix: str | None = Field(None, description="the site's topic prefix; default `roadside/<site>`. Devices "
                                                 "publish under `<prefix>/<device>/`, the controller under "
                                                 "`<prefix>/controller/`; edges and controller of a site must agree")
    client_id: str | None = Field(None, description="MQTT client id (the broker keeps a persistent session "
                                                    "under it); default derived from site and device")
    username: str | None = Field(None, description="user name for the broker")
    password: SecretStr | None = Field(None, description="password for the broker (never logged or served)")
    tls: TlsConfig | None = Field(None, description="TLS settings; absent: plain TCP")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive (s)")
    reconnect_min_s: float = Field(1.0, gt=0, le=60, description="reconnect backoff starts here (s), doubling "
                                                                 "with random jitter ...")
    reconnect_max_s: float = Field(30.0, gt=0, le=3600, description="... up to this (s)")
    inflight: int = Field(20, ge=1, le=1000, description="QoS 1 messages published and not yet acknowledged, "
                                                         "at most")
    qos: Literal[0, 1] = Field(1, description="QoS of real-time messages (presence, health, controller state "
                                              "and events); counts are always QoS 1")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str | None) -> str | None:
        return None if v is None else check_prefix(v)

    _brokers = field_validator("brokers")(lambda cls, v: check_addresses(v, "brokers"))

    @model_validator(mode="after")
    def _backoff(self) -> "MqttConfig":
        if self.brokers and {"host", "port"} & self.model_fields_set:
            raise ValueError("give either host and port (one broker) or brokers (the nodes of a cluster), not both")
        check_ordered(self, ("reconnect_min_s", "reconnect_max_s"))
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        return self

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Every broker node to try, in order: ``brokers``, else the one ``host``/``port``."""
        return [split_address(b) for b in self.brokers] or [(self.host, self.port)]

    @property
    def address(self) -> str:
        """The first broker (``host:port``); with ``brokers``, all of them separated by commas."""
        return ",".join(self.brokers) if self.brokers else f"{self.host}:{self.port}"

    def relative_to(self, base: str | Path) -> "MqttConfig":
        """The same configuration with relative TLS file paths made relative to ``base`` (the folder of the
        configuration file that named them)."""
        if self.tls is None:
            return self

        def resolve(p: str | None) -> str | None:
            if p is None:
                return None
            q = Path(p).expanduser()
            return str(q if q.is_absolute() else Path(base) / q)

        tls = self.tls.model_copy(update={k: resolve(getattr(self.tls, k)) for k in ("ca_file", "cert_file", "key_file")})
        return self.model_copy(update={"tls": tls})


__all__ = ["MqttConfig", "TlsConfig", "check_addresses", "split_address"]
