"""core/errors.py: one hierarchy, statuses by whose fault it is, and map_exceptions."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

from pollama.core import errors
from pollama.core.errors import (RUNNER_TERMINATED, BadRequest, ClientDisconnected, ErrorCode,
                                 LocalError, NotFound, PollamaError, RegistryError, RemoteError,
                                 RunnerError, RunnerTerminated, StoreError, map_exceptions)


def _subclasses(cls: type[PollamaError]) -> list[type[PollamaError]]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


def test_remote_errors_are_4xx_and_local_errors_5xx() -> None:
    remote = _subclasses(RemoteError)
    local = _subclasses(LocalError)
    assert BadRequest in remote and NotFound in remote and RunnerError in local
    for cls in remote:
        assert 400 <= cls.status_hint < 500, cls
    for cls in local:
        assert 500 <= cls.status_hint < 600, cls


def test_the_error_types_live_in_core_errors() -> None:
    # Modules raise them; they are all defined here.
    import pollama.adapters
    import pollama.core

    for package in (pollama.core, pollama.adapters):
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{module.name}")
    for cls in _subclasses(PollamaError):
        assert cls.__module__ == errors.__name__, cls


def test_runner_terminated_says_what_ollama_says() -> None:
    assert RunnerTerminated().message == RUNNER_TERMINATED == "llama runner process has terminated"
    reason = f"{RUNNER_TERMINATED}: exit status 1"
    assert RunnerTerminated(reason).message == reason
    assert isinstance(RunnerTerminated(), RunnerError) and RunnerTerminated().status_hint == 500


def test_registry_error_takes_its_status_from_the_code() -> None:
    err = RegistryError(ErrorCode.BLOB_UNKNOWN)
    assert err.status_hint == 404 and err.message == "blob unknown to registry"


def test_client_disconnected_is_not_an_answer() -> None:
    assert not issubclass(ClientDisconnected, PollamaError)


def test_map_exceptions_maps_the_first_match_and_keeps_the_cause() -> None:
    mapping = {KeyError: lambda exc: NotFound(f"no {exc.args[0]}"),
               (LookupError, OSError): lambda exc: StoreError("broken")}
    with pytest.raises(NotFound, match="no x") as info:
        with map_exceptions(mapping):
            raise KeyError("x")
    assert isinstance(info.value.__cause__, KeyError)
    with pytest.raises(StoreError):
        with map_exceptions(mapping):
            raise IndexError(1)
    with pytest.raises(StoreError):
        with map_exceptions(mapping):
            raise FileNotFoundError("gone")


def test_map_exceptions_passes_the_rest_unchanged() -> None:
    with pytest.raises(ValueError):
        with map_exceptions({KeyError: lambda exc: NotFound("x")}):
            raise ValueError("other")
    with pytest.raises(BadRequest, match="mine"):
        with map_exceptions({KeyError: lambda exc: NotFound("x")}):
            raise BadRequest("mine")
    with map_exceptions({KeyError: lambda exc: NotFound("x")}):
        pass


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
