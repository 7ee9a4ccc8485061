"""core/errors.py: one hierarchy, each error with the HTTP status Ollama answers with."""

from __future__ import annotations

import pytest

from pollama.core import errors


@pytest.mark.parametrize(("cls", "status", "plain"), [
    (errors.PollamaError, 500, False),
    (errors.BadRequest, 400, False),
    (errors.NotFound, 404, False),
    (errors.NoRoute, 404, True),  # gin's bare "404 page not found"
    (errors.MethodNotAllowed, 405, True),
    (errors.RunnerError, 500, False),
    (errors.StoreError, 500, False),
])
def test_status_hints(cls: type[errors.PollamaError], status: int, plain: bool) -> None:
    err = cls("what went wrong")
    assert isinstance(err, errors.PollamaError)
    assert (err.message, str(err), err.status_hint, err.plain_text) == (
        "what went wrong", "what went wrong", status, plain)


def test_status_hint_can_be_set_per_error() -> None:
    err = errors.BadRequest("too many", status_hint=429)
    assert err.status_hint == 429
    assert errors.BadRequest("x").status_hint == 400  # the class keeps its own


def test_no_route_is_a_not_found() -> None:
    with pytest.raises(errors.NotFound):
        raise errors.NoRoute("404 page not found")


def test_template_error_is_a_bad_request_in_ollamas_words() -> None:
    err = errors.TemplateError('template: :1: unexpected "}" in operand')
    assert isinstance(err, errors.BadRequest) and err.status_hint == 400
    assert err.message == 'template error: template: :1: unexpected "}" in operand'
    assert err.detail == 'template: :1: unexpected "}" in operand'
