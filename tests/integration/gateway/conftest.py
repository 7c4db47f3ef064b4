"""The gateway tests' shared fixture: memory and orchestrator on real servers (`test_gateway_api.mesh`)."""

from tests.integration.gateway.test_gateway_api import mesh  # noqa: F401 - a fixture, found by pytest here
