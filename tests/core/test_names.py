"""Model names and digests (Ollama's types/model/name.go; server/routes.go CreateBlobHandler),
incl. upstream types/model/name_test.go."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, strategies as st

from pollama.core.errors import BadRequest
from pollama.core.names import (
    Name,
    blob_filename,
    digest_str,
    is_valid_name,
    parse_digest,
    parse_name,
    parse_name_with_scheme,
)

P80 = "8" * 80
P350 = "3" * 350
HEX = "0123456789abcdef" * 4


def N(host: str, namespace: str, model: str, tag: str) -> Name:
    return Name(host=host, namespace=namespace, model=model, tag=tag)


# ---- valid names --------------------------------------------------------------------------

VALID = [
    ("model", N("registry.ollama.ai", "library", "model", "latest")),
    ("llama3.2", N("registry.ollama.ai", "library", "llama3.2", "latest")),
    ("llama3.2:1b", N("registry.ollama.ai", "library", "llama3.2", "1b")),
    ("namespace/model", N("registry.ollama.ai", "namespace", "model", "latest")),
    ("host/namespace/model", N("host", "namespace", "model", "latest")),
    ("host/namespace/model:tag", N("host", "namespace", "model", "tag")),
    ("host:port/namespace/model:tag", N("host:port", "namespace", "model", "tag")),
    ("host:port/namespace/model", N("host:port", "namespace", "model", "latest")),
    ("localhost:5000/ns/m", N("localhost:5000", "ns", "m", "latest")),
    ("hf.co/user/repo:Q4_K_M", N("hf.co", "user", "repo", "Q4_K_M")),
    ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:IQ3_M",
     N("hf.co", "bartowski", "Llama-3.2-1B-Instruct-GGUF", "IQ3_M")),
    ("registry.ollama.ai/library/dolphin-mistral:7b-v2.6-dpo-laser-q6_K",
     N("registry.ollama.ai", "library", "dolphin-mistral", "7b-v2.6-dpo-laser-q6_K")),
    ("h/nn/mm:t", N("h", "nn", "mm", "t")),
    ("h/n/m:t", N("h", "n", "m", "t")),
    ("_why/_the/_lucky:_stiff", N("_why", "_the", "_lucky", "_stiff")),
    ("host:https/namespace/model:tag", N("host:https", "namespace", "model", "tag")),
    (f"{P80}/{P80}/{P80}:{P80}", N(P80, P80, P80, P80)),
    (f"{P350}/{P80}/{P80}:{P80}", N(P350, P80, P80, P80)),
    ("m:" + P80, N("registry.ollama.ai", "library", "m", P80)),
    ("a..b", N("registry.ollama.ai", "library", "a..b", "latest")),  # not a path component
    ("Mistral:Latest", N("registry.ollama.ai", "library", "Mistral", "Latest")),  # case kept
    ("https://host/ns/m:t", N("host", "ns", "m", "t")),
    ("http://localhost:5000/ns/m", N("localhost:5000", "ns", "m", "latest")),
]


@pytest.mark.parametrize(("text", "want"), VALID)
def test_parse_valid(text: str, want: Name) -> None:
    assert parse_name(text) == want
    assert is_valid_name(text)


@pytest.mark.parametrize(
    ("text", "scheme"),
    [
        ("scheme://host:port/namespace/model:tag", "scheme"),
        ("https://h/n/m", "https"),
        ("http://localhost:5000/ns/m:t", "http"),
        ("HTTPS://h/n/m", "HTTPS"),
        ("h/n/m", None),
        ("m", None),
    ],
)
def test_scheme_returned_separately(text: str, scheme: str | None) -> None:
    got_scheme, name = parse_name_with_scheme(text)
    assert got_scheme == scheme
    assert "://" not in name.host


# ---- invalid names ------------------------------------------------------------------------

INVALID = [
    "",
    ":",
    "/",
    "//",
    "^",
    "@",
    "@t",
    "m@d",
    "00@",
    "//mm",
    "//mm:@",
    "hh//",
    "/nn/mm",
    "mm:",
    "n/m:",
    ":tag",
    "h//m",
    "h/n/",
    "h/n/m:",
    "a/b/c/d",  # host would contain "/"
    "-hh/nn/mm:tt",
    "hh/-nn/mm:tt",
    "hh/nn/-mm:tt",
    "hh/nn/mm:-tt",
    ".m",
    "m:.t",
    "host/name:space/model:tag",  # ":" only allowed in host
    "host/name.space/model:tag",  # "." not allowed in namespace
    "x" * 81,  # 81-char model
    "m:" + "t" * 81,
    "n" * 81 + "/m",
    "h" * 351 + "/n/m",
    "model@sha256-" + HEX,
    "ns/model@sha256:" + HEX,
    "model:tag@sha256:" + HEX,
    # path traversal and separators
    "..",
    "../m",
    "../../etc/passwd",
    "h/../m",
    "h/n/..",
    "../n/m:t",
    "h/n/m:..",
    "m:../../x",
    "..\\..\\m",
    "m\\n",
    "h/n\\x/m",
    ".",
    "./m",
    "m\x00",
    "m\x00:t",
    "\x00",
    # whitespace, unicode, control chars
    " m",
    "m ",
    "m\n",
    "m:t\n",
    "mödel",
    "m:tàg",
    "ｍ",  # fullwidth m: str.isalnum() would accept it
    "m\u0660",  # Arabic-Indic digit zero
    "m\t",
    # schemes without host, odd schemes
    "https://m",
    "https://ns/m",
    "http://m:t",
    "://h/n/m",
    "1http://h/n/m",
    "../..://h/n/m",
    "a b://h/n/m",
    "https://h/n/m/x",
    "https:///n/m",
]


@pytest.mark.parametrize("text", INVALID)
def test_parse_invalid(text: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_name(text)
    assert info.value.message == "invalid model name"
    assert info.value.status_hint == 400
    assert not is_valid_name(text)


@pytest.mark.parametrize("value", [None, 5, b"model", ["m"]])
def test_parse_non_string(value: object) -> None:
    with pytest.raises(BadRequest):
        parse_name(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fields",
    [
        dict(host="", namespace="n", model="m", tag="t"),
        dict(host="h", namespace="", model="m", tag="t"),
        dict(host="h", namespace="n", model="", tag="t"),
        dict(host="h", namespace="n", model="m", tag=""),
        dict(host="h/x", namespace="n", model="m", tag="t"),
        dict(host="h", namespace="..", model="m", tag="t"),
        dict(host="h", namespace="n", model="..", tag="t"),
        dict(host="h", namespace="n", model="m", tag=".."),
        dict(host="h", namespace="n", model="a/b", tag="t"),
        dict(host="h", namespace="n", model="m", tag="t:u"),
        dict(host="h", namespace="n", model="m", tag=7),
    ],
)
def test_constructor_validates(fields: dict[str, object]) -> None:
    with pytest.raises(BadRequest):
        Name(**fields)  # type: ignore[arg-type]


def test_name_is_frozen_and_repr_is_python() -> None:
    n = parse_name("hf.co/user/repo:Q4_K_M")
    with pytest.raises(AttributeError):
        n.model = "x"  # type: ignore[misc]
    assert eval(repr(n), {"Name": Name}) == n
    assert hash(n) == hash(parse_name("hf.co/user/repo:Q4_K_M"))


# ---- display forms ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shortest"),
    [
        ("registry.ollama.ai/library/model:latest", "model:latest"),
        ("registry.ollama.ai/library/model:tag", "model:tag"),
        ("registry.ollama.ai/namespace/model:tag", "namespace/model:tag"),
        ("host/namespace/model:tag", "host/namespace/model:tag"),
        ("host/library/model:tag", "host/library/model:tag"),
        ("model", "model:latest"),
        ("llama3.2:1b", "llama3.2:1b"),
        ("REGISTRY.OLLAMA.AI/LIBRARY/Model:Tag", "Model:Tag"),
        ("Registry.Ollama.AI/Someone/m", "Someone/m:latest"),
        ("hf.co/user/repo:Q4_K_M", "hf.co/user/repo:Q4_K_M"),
        ("localhost:5000/ns/m", "localhost:5000/ns/m:latest"),
        ("https://registry.ollama.ai/library/m:t", "m:t"),
    ],
)
def test_display_shortest(text: str, shortest: str) -> None:
    n = parse_name(text)
    assert n.display_shortest() == shortest
    assert parse_name(shortest).equal_fold(n)  # dropped default parts lose their casing


def test_display_full_and_manifest_parts() -> None:
    n = parse_name("llama3.2")
    assert n.display_full() == "registry.ollama.ai/library/llama3.2:latest"
    assert str(n) == n.display_full()
    assert n.manifest_parts() == ("registry.ollama.ai", "library", "llama3.2", "latest")
    assert parse_name("localhost:5000/ns/m").manifest_parts() == (
        "localhost:5000", "ns", "m", "latest"
    )
    assert Name.from_manifest_parts(n.manifest_parts()) == n


@pytest.mark.parametrize(
    "parts",
    [(), ("h", "n", "m"), ("h", "n", "m", "t", "x"), ("..", "n", "m", "t"), ("h", "n", "m", "")],
)
def test_from_manifest_parts_rejects(parts: tuple[str, ...]) -> None:
    with pytest.raises(BadRequest):
        Name.from_manifest_parts(parts)


# ---- case-insensitive matching ------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ("mistral", "Mistral", True),
        ("mistral:latest", "MISTRAL:LATEST", True),
        ("Registry.Ollama.AI/Library/m:T", "m:t", True),
        ("hf.co/User/Repo:Q4_K_M", "HF.CO/user/repo:q4_k_m", True),
        ("mistral", "mistral:7b", False),
        ("ns/m", "m", False),
        ("h/n/m", "registry.ollama.ai/n/m", False),
    ],
)
def test_equal_fold(a: str, b: str, equal: bool) -> None:
    na, nb = parse_name(a), parse_name(b)
    assert na.equal_fold(nb) is equal
    assert nb.equal_fold(na) is equal
    assert (na.fold_key() == nb.fold_key()) is equal
    if a != b and equal:
        assert na != nb  # plain equality stays case-sensitive: stored spelling matters


# ---- digests ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("sha256:" + HEX, HEX),
        ("sha256-" + HEX, HEX),
        ("sha256:" + HEX.upper(), HEX),
        ("sha256-" + "A" * 64, "a" * 64),
    ],
)
def test_parse_digest_valid(text: str, want: str) -> None:
    assert parse_digest(text) == want
    assert blob_filename(want) == "sha256-" + want
    assert digest_str(want) == "sha256:" + want


@pytest.mark.parametrize(
    "text",
    [
        "",
        HEX,
        "sha256:",
        "sha256:" + HEX[:-1],
        "sha256:" + HEX + "0",
        "sha256:" + HEX + "\n",
        "sha256_" + HEX,
        "SHA256:" + HEX,
        "sha512:" + HEX,
        "sha256:" + "g" * 64,
        " sha256:" + HEX,
        "sha256::" + HEX,
        "sha256:" + "０" * 64,  # fullwidth digits
        "sha256:../../../../etc/passwd",
    ],
)
def test_parse_digest_invalid(text: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_digest(text)
    assert info.value.message == "invalid digest format"


@pytest.mark.parametrize("bad", ["", HEX.upper(), HEX[:-1], "../" + HEX[3:], "sha256:" + HEX])
def test_blob_filename_and_digest_str_reject(bad: str) -> None:
    with pytest.raises(BadRequest):
        blob_filename(bad)
    with pytest.raises(BadRequest):
        digest_str(bad)


# ---- properties ---------------------------------------------------------------------------

_HOST_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}")
_NS_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,79}")
_PART_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}")


def _assert_grammar(n: Name) -> None:
    assert _HOST_RE.fullmatch(n.host)
    assert _NS_RE.fullmatch(n.namespace)
    assert _PART_RE.fullmatch(n.model)
    assert _PART_RE.fullmatch(n.tag)
    for part in n.manifest_parts():
        assert part not in (".", "..")
        assert not any(c in part for c in "/\\\x00")


# Text biased towards the grammar's alphabet so that valid names actually occur.
name_ish = st.text(alphabet=st.sampled_from("ab_Z09.-:/@\\\x00 é"), max_size=30)


@given(st.one_of(st.text(), name_ish))
def test_any_text_parses_to_grammar_or_bad_request(text: str) -> None:
    try:
        scheme, n = parse_name_with_scheme(text)
    except BadRequest as exc:
        assert exc.message == "invalid model name"
        return
    _assert_grammar(n)
    assert scheme is None or re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme)
    assert parse_name(n.display_full()) == n


first = st.sampled_from("abcXYZ019_")


def _part(rest_alphabet: str, max_rest: int) -> st.SearchStrategy[str]:
    return st.builds(
        lambda a, b: a + b, first, st.text(alphabet=rest_alphabet, max_size=max_rest)
    )


names = st.builds(
    Name,
    host=_part("aZ09_-.:", 40) | st.just(P350),
    namespace=_part("aZ09_-", 79),
    model=_part("aZ09_-.", 79),
    tag=_part("aZ09_-.", 79),
)


@given(names)
def test_round_trip_display_full(n: Name) -> None:
    assert parse_name(n.display_full()) == n
    assert parse_name(n.display_shortest()).equal_fold(n)
    assert Name.from_manifest_parts(n.manifest_parts()) == n


@given(names, st.data())
def test_equal_fold_ignores_ascii_case(n: Name, data: st.DataObject) -> None:
    flips = data.draw(st.lists(st.booleans(), min_size=4, max_size=4))
    parts = [p.swapcase() if f else p for p, f in zip(n.manifest_parts(), flips)]
    other = Name.from_manifest_parts(parts)
    assert n.equal_fold(other)


@given(st.text(alphabet="0123456789abcdefABCDEF", min_size=64, max_size=64), st.sampled_from(":-"))
def test_digest_round_trip(hex_: str, sep: str) -> None:
    h = parse_digest("sha256" + sep + hex_)
    assert h == hex_.lower()
    assert parse_digest(digest_str(h)) == h
    assert parse_digest(blob_filename(h)) == h


@given(st.text())
def test_parse_digest_only_bad_request(text: str) -> None:
    try:
        h = parse_digest(text)
    except BadRequest:
        return
    assert re.fullmatch(r"[0-9a-f]{64}", h)
