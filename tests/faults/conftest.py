"""Fault tests: the production stack as processes on the session's servers (see stack.py)."""

from __future__ import annotations

import pytest

from tests.faults.stack import Endpoints
from tests.support.servers import Servers


@pytest.fixture
def endpoints(servers: Servers) -> Endpoints:
    """The session's PostgreSQL, Redis and Mosquitto, for `production_stack`."""
    return Endpoints(servers.postgres_url, servers.redis_url, servers.mqtt_host, servers.mqtt_port)
