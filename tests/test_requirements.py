"""A real part a test needs and does not find fails it under CI and skips it elsewhere."""

from __future__ import annotations

import pytest

from agently_core.testing import in_ci, require, require_program


@pytest.mark.parametrize(("value", "ci"), [("true", True), ("1", True), ("yes", True),
                                           ("", False), ("false", False), ("0", False)])
def test_ci_is_a_true_value_of_CI(monkeypatch, value: str, ci: bool) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci() is ci


def test_a_missing_part_fails_under_ci_and_skips_elsewhere(monkeypatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"CI must have it.*the widget"):
        require(False, "the widget")
    with pytest.raises(pytest.fail.Exception, match="no-such-program-x is not installed"):
        require_program("no-such-program-x")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="the widget"):
        require(False, "the widget")
    require(True, "present: nothing happens")
    assert require_program("sh").endswith("/sh")
