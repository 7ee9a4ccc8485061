"""What a completion's options decide about decoding; the runner only carries it out.

``runners/llama_runner.py`` makes the llama.cpp calls and moves the bytes. Every number it
decodes by comes from here, out of the merged options (core.options; a missing key takes its
``DEFAULTS`` value), the slot's context size and the prompt:

- ``Decoding.from_options``: the sampler settings, the seed, the stop strings;
- ``Decoding.budget``: how many tokens may be generated. ``num_predict`` -1 (and any other
  negative, or more than ``10 × num_ctx``) is ``10 × num_ctx``, as Ollama's
  ``llm/server.go`` ``Completion`` caps it so that a model that never emits an end token
  cannot run forever with context shifting; -2 fills the context (llama.cpp's meaning);
- ``fit_prompt``: a prompt that fills the context keeps its first ``num_keep`` tokens (at most
  half the context) and its most recent tail;
- ``next_after_token``: after each generated token, stop, end at the length limit, shift the
  full window, or go on;
- ``shift``: the context shift (Ollama's default, ``runner/llamarunner``'s ``shiftContext``
  with ``ShiftDiscard``): keep ``num_keep`` tokens, drop the older half of the rest.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import BadRequest
from .options import DEFAULTS

__all__ = ["RUNNER_ENV_DEFAULTS", "Decoding", "Next", "Sampling", "check_context", "fit_prompt",
           "next_after_token", "runner_env", "shift"]


def _get(options: Mapping[str, Any], name: str) -> Any:
    return options.get(name, DEFAULTS[name])


@dataclass(frozen=True, slots=True, kw_only=True)
class Sampling:
    """The sampler chain's settings, in Ollama's option names."""

    top_k: int
    top_p: float
    min_p: float
    typical_p: float
    temperature: float
    repeat_penalty: float
    frequency_penalty: float
    presence_penalty: float

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Sampling:
        return cls(
            top_k=int(_get(options, "top_k")),
            top_p=float(_get(options, "top_p")),
            min_p=float(_get(options, "min_p")),
            typical_p=float(_get(options, "typical_p")),
            temperature=float(_get(options, "temperature")),
            repeat_penalty=float(_get(options, "repeat_penalty")),
            frequency_penalty=float(_get(options, "frequency_penalty")),
            presence_penalty=float(_get(options, "presence_penalty")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Decoding:
    """One completion's decoding settings, from its merged options."""

    sampling: Sampling
    seed: int | None  # None: the runner draws one
    num_predict: int  # as asked; ``budget`` says what it comes to
    num_keep: int
    repeat_last_n: int  # as asked; ``penalty_window`` says what it comes to
    stop: tuple[str, ...]

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Decoding:
        seed = int(_get(options, "seed"))
        return cls(
            sampling=Sampling.from_options(options),
            seed=seed if seed >= 0 else None,
            num_predict=int(_get(options, "num_predict")),
            num_keep=max(0, int(_get(options, "num_keep"))),
            repeat_last_n=int(_get(options, "repeat_last_n")),
            stop=tuple(options.get("stop") or ()),
        )

    def budget(self, n_ctx: int, n_prompt: int) -> int:
        """The most tokens to generate after ``n_prompt`` prompt tokens in ``n_ctx`` positions;
        0 means none, and a negative number (-2 with an overfull image prompt) no limit."""
        if self.num_predict == -2:
            return n_ctx - n_prompt
        if self.num_predict < 0 or self.num_predict > 10 * n_ctx:
            return 10 * n_ctx
        return self.num_predict

    def penalty_window(self, n_ctx: int) -> int:
        """Recent tokens the repeat penalties look at: -1 is the whole context."""
        return n_ctx if self.repeat_last_n == -1 else max(0, self.repeat_last_n)


def fit_prompt(tokens: Sequence[int], n_ctx: int, num_keep: int) -> list[int]:
    """The prompt as it goes into ``n_ctx`` positions: unchanged when shorter, else its first
    ``num_keep`` tokens (at most half the context) and the most recent tail, which together
    take half the context so that there is room to generate."""
    out = list(tokens)
    if len(out) >= n_ctx:
        keep = min(num_keep, n_ctx // 2)
        tail = max(1, n_ctx // 2 - keep)
        out = out[:keep] + out[-tail:]
    return out


def shift(window: Sequence[int], num_keep: int) -> list[int]:
    """The full window after a context shift: its first ``num_keep`` tokens (at most half),
    then the newer half of the rest."""
    keep = min(num_keep, len(window) // 2)
    rest = window[keep:]
    return [*window[:keep], *rest[len(rest) // 2:]]


class Next(enum.Enum):
    """What follows a generated token."""

    GO_ON = "go_on"
    STOP = "stop"  # a stop string matched: done_reason "stop"
    LENGTH = "length"  # num_predict reached, or the context is full and may not shift
    SHIFT = "shift"  # the context is full: shift the window and go on


def next_after_token(*, stopped: bool, generated: int, budget: int, full: bool,
                     can_shift: bool) -> Next:
    """After a token that was not an end token: ``stopped`` (a stop string matched),
    ``generated`` tokens so far against ``budget``, ``full`` (prompt and tokens fill the
    context), ``can_shift`` (the request allows a context shift and it has no images)."""
    if stopped:
        return Next.STOP
    if 0 < budget <= generated:
        return Next.LENGTH
    if full:
        return Next.SHIFT if can_shift else Next.LENGTH
    return Next.GO_ON


def check_context(context: Sequence[int] | None, n_vocab: int) -> None:
    """``context`` tokens come from a client: one outside the vocabulary would reach
    llama_decode (which fails, or crashes on a negative id) or the detokenizer."""
    for token in context or ():
        if not 0 <= token < n_vocab:
            raise BadRequest(f"invalid context: token {token} is not in the model's "
                             f"vocabulary (0 to {n_vocab - 1})")


# llama.cpp's CPU threads meet at a barrier after every op; libgomp's default lets a waiting
# thread spin 300,000 times first. On a machine doing other work (a browser, the server's own
# HTTP path) a spinning thread keeps a core another runnable task needs, and decode collapses
# (bench: 1-3 tokens/s against 20-30 with one CPU hog on 2 cores). 1000 spins hand the core
# back quickly and cost nothing measurable on an idle machine.
RUNNER_ENV_DEFAULTS: dict[str, str] = {"GOMP_SPINCOUNT": "1000"}


def runner_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for a runner process: ``environ`` plus ``RUNNER_ENV_DEFAULTS`` for
    what the user did not set (an explicit ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` wins)."""
    env = dict(environ)
    if "OMP_WAIT_POLICY" not in env:
        for key, value in RUNNER_ENV_DEFAULTS.items():
            env.setdefault(key, value)
    return env
