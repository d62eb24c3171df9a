"""The ``docker`` provider passes the provider conformance suite, its manager cases too:
containers observed from the engine (our label) are left behind by neither a failed ensure,
a release nor an ensure cancelled while the container starts."""

from __future__ import annotations

from typing import Any

import pytest
from agently_core_docker.provider import DockerProvider
from agently_core_docker.testing import our_containers

from agently_core.testing import ProviderConformance


class TestDockerProviderConformance(ProviderConformance):
    kind = "docker"
    concurrent_ensures = 3
    # cancel at the first suspension point and while the engine creates the container
    start_cancel_delays = (0.0, 0.1)

    @pytest.fixture(autouse=True)
    def _engine(self, docker_engine: str, docker_test_image: str) -> None:
        self.host, self.image = docker_engine, docker_test_image

    def make_provider(self) -> DockerProvider:
        return DockerProvider()

    def make_requirement(self, scenario: str) -> dict[str, Any]:
        if scenario == "bad_config":
            return {"config": {"image": self.image, "user": "root"}}
        return {"config": {"image": self.image}}

    def live_resources(self) -> set[Any]:
        return set(our_containers(self.host))
