"""FLEET.yaml: the central collector's configuration (strict: unknown keys are rejected with their key path).

```yaml
broker:                        # the clustered broker's AMQP side (RabbitMQ)
  nodes: ["10.0.0.5:5672", "10.0.0.6:5672", "10.0.0.7:5672"]
  username: collector
  password: "..."
  tls: {ca_file: ca.pem}       # optional: AMQPS
  queue: roadside.fleet.collector
database:
  dsn: postgresql://fleet@db.city.example/fleet
topic_root: roadside           # sites publish under roadside/<site>/ ...
sites: {}                      # ... except these, which have their own prefix: {main-st: city/north/main-st}
batch: {max_messages: 500, max_wait_s: 0.2}
prefetch: 1000
metrics: {host: 127.0.0.1, port: 9464}   # Prometheus; null: none
```
"""
from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from roadside.core.config import Identifier, Strict
from roadside.core.mqtt import TlsConfig, check_addresses
from roadside.core.topics import check_prefix


class AmqpConfig(Strict):
    nodes: list[str] = Field(default_factory=lambda: ["127.0.0.1:5672"], min_length=1, max_length=64,
                             description="the cluster's AMQP listeners, `host:port` each; a collector connects to "
                                         "the first that answers and moves on when its node dies")
    username: str = Field("guest", description="the collector's broker user")
    password: SecretStr = Field(SecretStr("guest"), description="its password (never logged)")
    vhost: str = Field("/", description="RabbitMQ virtual host")
    tls: TlsConfig | None = Field(None, description="AMQPS settings; absent: plain TCP")
    queue: str = Field("roadside.fleet.collector", min_length=1, max_length=200,
                       description="the quorum queue every collector consumes (competing consumers)")
    heartbeat_s: int = Field(10, ge=1, le=600, description="AMQP heartbeat: a dead node is noticed after ~2x this")

    _nodes = field_validator("nodes")(lambda cls, v: check_addresses(v, "nodes"))


class DatabaseConfig(Strict):
    dsn: SecretStr = Field(SecretStr("postgresql://127.0.0.1:5432/roadside_fleet"),
                           description="PostgreSQL connection string (libpq); may hold a password, never logged")


class BatchConfig(Strict):
    max_messages: int = Field(500, ge=1, le=100_000, description="messages written in one transaction, at most")
    max_wait_s: float = Field(0.2, gt=0, le=60, description="a batch is written after this long even if not full")


class MetricsConfig(Strict):
    host: str = Field("127.0.0.1", description="address of the Prometheus endpoint")
    port: int = Field(9464, ge=0, le=65535, description="its port (0: any free port)")


class FleetConfig(Strict):
    broker: AmqpConfig = Field(default_factory=AmqpConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    topic_root: str = Field("roadside", description="sites publish under `<topic_root>/<site>/` (the product default)")
    sites: dict[Identifier, str] = Field(default_factory=dict,
                                         description="sites with a custom topic prefix (`mqtt.prefix` of their edges "
                                                     "and controller): site -> prefix")
    batch: BatchConfig = Field(default_factory=BatchConfig)
    prefetch: int = Field(1000, ge=1, le=65535, description="unacknowledged messages a collector holds, at most "
                                                            "(acknowledged only after the database committed them)")
    online_timeout_s: float = Field(180.0, gt=0, description="a device whose last message is older than this is not "
                                                             "counted online even without its Last Will")
    metrics: MetricsConfig | None = Field(None, description="Prometheus endpoint of the fleet; absent: none")

    @field_validator("topic_root")
    @classmethod
    def _root(cls, v: str) -> str:
        return check_prefix(v)

    @field_validator("sites")
    @classmethod
    def _sites(cls, v: dict[str, str]) -> dict[str, str]:
        return {k: check_prefix(p) for k, p in v.items()}


__all__ = ["AmqpConfig", "BatchConfig", "DatabaseConfig", "FleetConfig", "MetricsConfig"]
