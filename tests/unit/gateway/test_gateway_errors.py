"""Error mapping: gRPC status -> HTTP with the service's message; validation errors -> 400 naming the field."""

from __future__ import annotations

import grpc
import pytest

from gateway.errors import ApiError, from_domain, from_grpc, validation_message
from idlock.errors import NotFound, PreconditionFailed


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("code", "status", "name"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400, "invalid_argument"),
        (grpc.StatusCode.UNAUTHENTICATED, 401, "unauthenticated"),
        (grpc.StatusCode.PERMISSION_DENIED, 403, "permission_denied"),
        (grpc.StatusCode.NOT_FOUND, 404, "not_found"),
        (grpc.StatusCode.FAILED_PRECONDITION, 409, "failed_precondition"),
        (grpc.StatusCode.ALREADY_EXISTS, 409, "already_exists"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "resource_exhausted"),
        (grpc.StatusCode.UNAVAILABLE, 503, "unavailable"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504, "deadline_exceeded"),
        (grpc.StatusCode.INTERNAL, 502, "upstream_error"),
        (grpc.StatusCode.UNKNOWN, 502, "upstream_error"),
    ],
)
def test_grpc_status_maps_to_http(code: grpc.StatusCode, status: int, name: str) -> None:
    err = from_grpc(FakeRpcError(code, "the service says why"), "memory")
    assert (err.status, err.code) == (status, name)
    assert "the service says why" in err.message
    assert err.body() == {"error": {"code": name, "message": err.message}}


def test_service_message_is_kept_verbatim_for_client_errors() -> None:
    err = from_grpc(
        FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION, "no face found in reference 2"), "memory"
    )
    assert err.message == "no face found in reference 2"


def test_transient_errors_name_the_service() -> None:
    err = from_grpc(FakeRpcError(grpc.StatusCode.UNAVAILABLE, ""), "orchestrator")
    assert err.message == "the orchestrator service is unavailable, try again later"
    assert err.headers == {"Retry-After": "1"}
    late = from_grpc(FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"), "memory")
    assert "did not answer in time" in late.message


def test_domain_errors_keep_their_status() -> None:
    assert from_domain(NotFound("character c1 not found")).status == 404
    assert from_domain(PreconditionFailed("no consent")).status == 409


def test_validation_message_names_the_field() -> None:
    message, items = validation_message(
        [
            {"loc": ("body", "character_id"), "msg": "Field required"},
            {"loc": ("body", "options", "video"), "msg": "Input should be a valid boolean"},
            {"loc": ("query", "page_size"), "msg": "Input should be less than or equal to 1000"},
        ]
    )
    assert message.startswith("invalid request: character_id (body): Field required")
    assert "options.video (body)" in message and "page_size (query)" in message
    assert items[0] == {"field": "character_id (body)", "problem": "Field required"}


def test_broken_json_is_reported_as_such() -> None:
    message, _ = validation_message(
        [
            {
                "type": "json_invalid",
                "loc": ("body", 1),
                "msg": "JSON decode error",
                "ctx": {"error": "Expecting value"},
            }
        ]
    )
    assert message == "invalid request: body: not valid JSON at character 1 (Expecting value)"


def test_api_error_response_carries_headers() -> None:
    resp = ApiError(429, "rate_limited", "slow down", headers={"Retry-After": "3"}).response()
    assert resp.status_code == 429 and resp.headers["retry-after"] == "3"
