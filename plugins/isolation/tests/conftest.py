"""Fixtures for the isolation library's tests: configuration isolated from the machine."""

from __future__ import annotations

import pytest

# The shared kit's checks (next_call_works, Box.contained, ...) report values like a test's
# own asserts; this runs before any test module imports the kit.
pytest.register_assert_rewrite("agently_core_isolation.testing")


@pytest.fixture(autouse=True)
def _isolated(agently_clean_environment: None) -> None:
    """No AGENTLY_* variable of the developer's shell reaches these tests."""
