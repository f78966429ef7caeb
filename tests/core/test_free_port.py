"""free_port: the ports tests and ``roadside demo`` start servers on. Two RabbitMQ nodes of one test cluster
once got the same distribution port from it (the kernel's bind(0) handed the same port out twice)."""
import itertools
import random
import socket

from roadside.core import testing
from roadside.core.testing import _ephemeral_range, free_port


def test_free_port_never_hands_out_a_port_twice_and_each_is_bindable_outside_the_ephemeral_range():
    ports = [free_port() for _ in range(3000)]
    assert len(set(ports)) == len(ports)
    low, _ = _ephemeral_range()
    assert all(port < low for port in ports)  # an outgoing connection cannot take it as its local port
    for port in ports[:50]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_free_port_skips_a_port_that_something_listens_on(monkeypatch):
    taken = free_port()
    testing._HANDED_OUT.discard(taken)  # only the bind check can now refuse it
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", taken))
        busy.listen()
        draws = itertools.chain([taken, taken], range(testing._LOWEST_PORT, _ephemeral_range()[0]))
        monkeypatch.setattr(random.SystemRandom, "randrange", lambda self, a, b: next(draws))
        port = free_port()
        assert port != taken
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
