"""Litestar routes answer errors in OpenAI's format: bad parameters name the field, an
unexpected exception is a logged 500 with no internals, HTTP exceptions keep their status."""

from __future__ import annotations

import logging

import pytest
from litestar import Litestar, get
from litestar.exceptions import NotAuthorizedException
from litestar.params import FromPath, FromQuery
from litestar.testing import TestClient

from tollgate_shared.web import OPENAI_EXCEPTION_HANDLERS


@get("/boom")
async def boom() -> None:
    raise RuntimeError("secret internals")


@get("/item/{n:int}")
async def item(n: FromPath[int], limit: FromQuery[int] = 10) -> dict[str, int]:
    return {"n": n, "limit": limit}


@get("/private")
async def private() -> None:
    raise NotAuthorizedException("no key")


APP = Litestar([boom, item, private], exception_handlers=OPENAI_EXCEPTION_HANDLERS)


def test_an_unexpected_exception_is_a_logged_openai_500(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR), TestClient(APP) as client:
        resp = client.get("/boom")
    assert resp.status_code == 500
    err = resp.json()["error"]
    assert err["type"] == "api_error"
    assert "secret internals" not in resp.text
    assert any("unexpected error on /boom" in r.message for r in caplog.records)


def test_a_bad_parameter_is_a_400_naming_it() -> None:
    with TestClient(APP) as client:
        resp = client.get("/item/1", params={"limit": "many"})
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["param"] == "limit"
    assert err["type"] == "invalid_request_error"


def test_http_exceptions_keep_their_status() -> None:
    with TestClient(APP) as client:
        resp = client.get("/private")
    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == "auth_error"
