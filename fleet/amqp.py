"""The collectors' AMQP connection settings (pika), one per node of ``broker.nodes``, tried in turn."""
from __future__ import annotations

import ssl

from roadside.core.mqtt import split_address
from roadside.fleet.config import FleetConfig


def amqp_parameters(cfg: FleetConfig) -> list:
    import pika

    b = cfg.broker
    creds = pika.PlainCredentials(b.username, b.password.get_secret_value())
    out = []
    for entry in b.nodes:
        host, port = split_address(entry)
        ssl_options = None
        if b.tls is not None:
            ctx = ssl.create_default_context(cafile=b.tls.ca_file)
            if b.tls.cert_file:
                ctx.load_cert_chain(b.tls.cert_file, b.tls.key_file)
            ctx.check_hostname = not b.tls.insecure
            ssl_options = pika.SSLOptions(ctx, host)
        out.append(pika.ConnectionParameters(host=host, port=port, virtual_host=b.vhost, credentials=creds,
                                             heartbeat=b.heartbeat_s, blocked_connection_timeout=60,
                                             connection_attempts=1, socket_timeout=5, ssl_options=ssl_options))
    return out


__all__ = ["amqp_parameters"]
