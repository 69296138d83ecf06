"""Fixed ports stay out of the kernel's ephemeral range, and a port taken by an outgoing connection is named.

A server binding a fixed port inside the ephemeral range (32768-60999 on Linux) fails at random when a
client connection was given that local port first (CI once lost its worker pool on 50100 that way).
"""

from __future__ import annotations

import dataclasses
import socket

import pytest

from darkpool.config import Settings, load_settings
from darkpool.errors import DarkpoolError
from darkpool.stack.process import Service, ephemeral_port_range, port_bindable, port_open
from tests.conftest import TEST_ENVIRONMENT


def _fixed_ports(settings: Settings) -> dict[str, int]:
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings) if f.name.endswith("_port")}


@pytest.mark.parametrize("source", ["defaults", "tests"])
def test_every_fixed_port_lies_below_the_ephemeral_range(source: str) -> None:
    low, _ = ephemeral_port_range()
    ports = (_fixed_ports(Settings()) if source == "defaults"
             else {k: int(v) for k, v in TEST_ENVIRONMENT.items() if k.endswith("_PORT")})
    inside = {name: port for name, port in ports.items() if port >= low}
    assert not inside, f"ports inside the ephemeral range (from {low}): {inside}"


def test_a_port_held_by_an_outgoing_connection_is_not_bindable_and_start_says_why(tmp_path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        client = socket.socket()
        client.bind(("127.0.0.1", 0))  # a client's local port, like one the kernel hands out
        client.connect(server.getsockname())
        accepted, _ = server.accept()
        held = client.getsockname()[1]
        try:
            assert not port_open("127.0.0.1", held)  # nothing listens there ...
            assert not port_bindable("127.0.0.1", held)  # ... and still no server can bind it
            settings = dataclasses.replace(load_settings(), state_dir=tmp_path)
            service = Service(name="sleeper", port=held, settings=settings,
                              command=lambda: ["sleep", "60"], ready=lambda: False)
            with pytest.raises(DarkpoolError, match=f"port 127.0.0.1:{held} cannot be bound"):
                service.start()
        finally:
            accepted.close()
            client.close()
    assert port_bindable("127.0.0.1", held)
