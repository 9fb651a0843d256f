"""errors.py: every error's HTTP status and WebSocket close code, in one tree."""

from __future__ import annotations

import pytest

from portico import errors
from portico.errors import Close, PorticoError, described


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        (errors.SettingsError, 500),
        (errors.BadRequest, 400),
        (errors.Unauthorized, 401),
        (errors.Forbidden, 403),
        (errors.LimitReached, 403),
        (errors.NotFound, 404),
        (errors.MethodNotAllowed, 405),
        (errors.Conflict, 409),
        (errors.CellFailed, 500),
        (errors.BadGateway, 502),
        (errors.Unavailable, 503),
        (errors.GatewayTimeout, 504),
    ],
)
def test_each_error_has_its_status(kind: type[PorticoError], status: int) -> None:
    error = kind("what happened")
    assert isinstance(error, PorticoError) and error.status == status and error.message == "what happened"
    assert error.reason  # every kind has a reason phrase for the body


def test_close_codes() -> None:
    assert errors.Unavailable("x").close_code == Close.TRY_AGAIN == 1013
    assert PorticoError("x").close_code == Close.INTERNAL == 1011
    assert {c.value for c in Close} == {1000, 1001, 1011, 1013, 4000, 4008}


def test_status_reason_and_extra_can_be_given() -> None:
    error = errors.BadGateway("backend said no", "Backend Refused", status=429, headers={"Retry-After": "1"})
    assert (error.status, error.reason, error.headers) == (429, "Backend Refused", {"Retry-After": "1"})
    assert errors.BadGateway("x").status == 502  # the class keeps its own


def test_settings_errors_are_value_errors_too() -> None:
    assert issubclass(errors.SettingsError, ValueError)


def test_an_error_without_text_is_described_by_its_kind() -> None:
    assert described(TimeoutError()) == "timed out"
    assert described(ConnectionResetError()) == "ConnectionResetError"
    assert described(ValueError("bad")) == "bad"
