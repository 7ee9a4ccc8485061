"""core/limits.py: how much one client may make the server hold (body bounds per route, timeouts
and connections read from the environment)."""

from __future__ import annotations

import pytest

from pollama.core import errors, limits
from pollama.core.limits import MiB, Limits


@pytest.mark.parametrize(("handler", "method", "bound"), [
    ("blob", "POST", None),  # uploads stream to disk
    ("registry_upload", "PATCH", None),
    ("registry_upload_start", "POST", None),
    ("registry_manifest", "GET", None),
    ("registry_manifest", "PUT", 4 * MiB),
    ("chat", "POST", 128 * MiB),  # may carry images
    ("openai_responses", "POST", 128 * MiB),
    ("show", "POST", 1 * MiB),
    ("tags", "GET", 1 * MiB),
])
def test_body_limit_by_route(handler: str, method: str, bound: int | None) -> None:
    assert Limits().body_limit(handler, method) == bound


def test_too_large_is_a_413_that_names_the_limit() -> None:
    err = limits.too_large(1000)
    assert err.status_hint == 413
    assert err.message == "request body too large: the limit for this route is 1000 bytes"
    assert errors.ServerBusy("busy").status_hint == 503


def env(**values: str) -> limits.Limits:
    return limits.from_env(lambda key: values.get(key, ""))


def test_from_env_defaults() -> None:
    assert env() == Limits()


def test_from_env_reads_every_value() -> None:
    got = env(MAX_BODY_MB="2", MAX_CONNECTIONS="9", HEADER_TIMEOUT="5", BODY_TIMEOUT="6.5",
              IDLE_TIMEOUT="7")
    assert got.large_body == 2 * MiB
    assert got.bodies_in_flight == Limits().bodies_in_flight  # never below the default
    assert (got.max_connections, got.header_timeout, got.body_timeout, got.idle_timeout) == (
        9, 5.0, 6.5, 7.0)
    assert got.small_body == Limits().small_body
    big = env(MAX_BODY_MB="2048")
    assert big.large_body == big.bodies_in_flight == 2048 * MiB


@pytest.mark.parametrize("bad", ["x", "0", "-3", "nan"])
def test_from_env_ignores_values_that_are_not_positive_numbers(bad: str) -> None:
    assert env(MAX_CONNECTIONS=bad, HEADER_TIMEOUT=bad) == Limits()
