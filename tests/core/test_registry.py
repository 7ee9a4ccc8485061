"""core/registry: URLs and scheme rules, Hugging Face names, range and resume planning, progress
lines, and the server side's parsing of /v2/ requests."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pollama.core import registry as reg
from pollama.core import routes
from pollama.core.errors import BadRequest, PollamaError
from pollama.core.manifest import Layer, Manifest, parse_manifest
from pollama.core.names import parse_name, parse_name_with_scheme

HEX = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
HEX2 = "c96f85a7d9fec3eef84a92b94a2841b1d9c24f46af8280c2a7e9ff5e1693f345"
MIB = 1024 * 1024


def endpoint(text: str, insecure: bool = False) -> reg.Endpoint:
    scheme, name = parse_name_with_scheme(text)
    return reg.endpoint_for(name, scheme=scheme, insecure=insecure)


# --- URLs and scheme rules ---------------------------------------------------------------


def test_urls_for_a_name() -> None:
    ep = endpoint("otherhost:11434/team/model:v1", insecure=True)
    assert ep.base_url() == "http://otherhost:11434/v2/team/model"
    assert ep.manifest_url("v1") == "http://otherhost:11434/v2/team/model/manifests/v1"
    assert ep.blob_url(HEX) == f"http://otherhost:11434/v2/team/model/blobs/sha256:{HEX}"
    assert ep.upload_url() == "http://otherhost:11434/v2/team/model/blobs/uploads/"


def test_default_registry_is_https() -> None:
    ep = endpoint("llama3.2")
    assert ep.base_url() == "https://registry.ollama.ai/v2/library/llama3.2"


@pytest.mark.parametrize("text,insecure,origin", [
    ("h:5000/ns/m", False, "https://h:5000"),
    ("h:5000/ns/m", True, "http://h:5000"),  # insecure: always plain http (Ollama makeRequest)
    ("https://h:5000/ns/m", False, "https://h:5000"),
    ("https://h:5000/ns/m", True, "http://h:5000"),
    ("http://h:5000/ns/m", True, "http://h:5000"),
    ("HTTP://h:5000/ns/m", True, "http://h:5000"),
])
def test_scheme_rules(text: str, insecure: bool, origin: str) -> None:
    assert endpoint(text, insecure).origin == origin


def test_http_needs_insecure() -> None:
    with pytest.raises(BadRequest, match="^insecure protocol http$"):
        endpoint("http://h:5000/ns/m")


def test_other_schemes_are_refused() -> None:
    with pytest.raises(BadRequest):
        endpoint("ftp://h/ns/m", insecure=True)
    with pytest.raises(BadRequest):
        reg.Endpoint(scheme="file", host="h", namespace="ns", model="m")


def test_manifest_url_rejects_bad_tags() -> None:
    with pytest.raises(BadRequest):
        endpoint("h/ns/m").manifest_url("../x")


@pytest.mark.parametrize("location,expected", [
    ("/v2/ns/m/blobs/uploads/abc", "https://h/v2/ns/m/blobs/uploads/abc?digest=sha256%3A" + HEX),
    ("/v2/ns/m/blobs/uploads/abc?_state=xyz",
     "https://h/v2/ns/m/blobs/uploads/abc?_state=xyz&digest=sha256%3A" + HEX),
    ("https://cdn.example/upload/1", "https://cdn.example/upload/1?digest=sha256%3A" + HEX),
    ("abc", "https://h/v2/ns/m/blobs/uploads/abc?digest=sha256%3A" + HEX),
])
def test_upload_commit_url(location: str, expected: str) -> None:
    assert endpoint("h/ns/m").upload_commit_url(location, HEX) == expected


def test_location_follows_the_insecure_rule() -> None:
    ep = endpoint("h:1/ns/m", insecure=True)
    assert ep.upload_commit_url("https://h:1/up/1", HEX).startswith("http://h:1/up/1?")


# --- Hugging Face --------------------------------------------------------------------------

# What hf.co serves for a GGUF repo (shape of a real answer; digests shortened to ours).
HF_MANIFEST = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
               "digest": "sha256:" + HEX2, "size": 310},
    "layers": [
        {"mediaType": "application/vnd.ollama.image.model", "digest": "sha256:" + HEX,
         "size": 807694464},
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "1" * 64,
         "size": 1434},
        {"mediaType": "application/vnd.ollama.image.params", "digest": "sha256:" + "2" * 64,
         "size": 96},
    ],
}).encode()


@pytest.mark.parametrize("text,url", [
    ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
     "https://hf.co/v2/bartowski/Llama-3.2-1B-Instruct-GGUF/manifests/Q4_K_M"),
    ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF",
     "https://hf.co/v2/bartowski/Llama-3.2-1B-Instruct-GGUF/manifests/latest"),
    ("huggingface.co/unsloth/gemma-3-1b-it-GGUF:iq3_m",
     "https://hf.co/v2/unsloth/gemma-3-1b-it-GGUF/manifests/iq3_m"),
    ("HF.co/TheBloke/Mistral-7B-v0.1-GGUF:Q8_0",
     "https://hf.co/v2/TheBloke/Mistral-7B-v0.1-GGUF/manifests/Q8_0"),
])
def test_hugging_face_names_resolve_to_hf_co(text: str, url: str) -> None:
    name = parse_name(text)
    assert reg.is_hugging_face(name)
    assert reg.endpoint_for(name).manifest_url(name.tag) == url


def test_hugging_face_name_is_stored_and_shown_as_typed() -> None:
    name = parse_name("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M")
    assert name.manifest_parts() == ("hf.co", "bartowski", "Llama-3.2-1B-Instruct-GGUF", "Q4_K_M")
    assert name.display_shortest() == "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"
    assert not reg.is_hugging_face(parse_name("smollm2"))


def test_hugging_face_manifest_gives_the_blobs_to_pull() -> None:
    manifest = parse_manifest(HF_MANIFEST)
    blobs = reg.blobs_of(manifest)
    assert [b.media_type for b in blobs] == [
        "application/vnd.ollama.image.model", "application/vnd.ollama.image.template",
        "application/vnd.ollama.image.params", "application/vnd.docker.container.image.v1+json"]
    assert blobs[-1] == manifest.config  # layers first, then the config, as Ollama
    parts = reg.plan_parts(blobs[0].size)
    assert len(parts) == reg.MAX_PARTS and reg.check_plan(parts, blobs[0].size)


def test_invalid_hugging_face_names() -> None:
    for text in ("hf.co/some.user/repo:Q4", "hf.co/user/repo:Q4/x", "hf.co//repo"):
        with pytest.raises(BadRequest):
            parse_name(text)


# --- query strings, percent-encoding -------------------------------------------------------


def test_quote_unquote() -> None:
    assert reg.quote("sha256:ab/c d") == "sha256%3Aab%2Fc%20d"
    assert reg.unquote("sha256%3Aab%2fc") == "sha256:ab/c"
    assert reg.unquote("plain") == "plain"
    for bad in ("%", "%2", "%zz", "%ff"):
        with pytest.raises(BadRequest):
            reg.unquote(bad)


@given(st.text())
def test_quote_round_trips(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return
    assert reg.unquote(reg.quote(text)) == text


def test_query_params() -> None:
    assert reg.query_params("/x?digest=sha256%3Aab&digest=other&n=&bad=%zz&a+b=c+d") == {
        "digest": "sha256:ab", "n": "", "a b": "c d"}
    assert reg.query_params("/x") == {}


# --- token auth ----------------------------------------------------------------------------


def test_bearer_challenge() -> None:
    ch = reg.parse_bearer_challenge(
        'Bearer realm="https://hf.co/v2/token",service="hf.co",'
        'scope="repository:user/repo:pull"')
    assert ch == reg.BearerChallenge(realm="https://hf.co/v2/token", service="hf.co",
                                     scope="repository:user/repo:pull")
    assert reg.token_url(ch) == ("https://hf.co/v2/token?service=hf.co"
                                 "&scope=repository%3Auser%2Frepo%3Apull")
    assert reg.parse_bearer_challenge('Basic realm="x"') is None
    assert reg.parse_bearer_challenge('Bearer realm="file:///etc/passwd"') is None
    assert reg.parse_bearer_challenge("") is None


def test_token_response() -> None:
    assert reg.parse_token_response(b'{"token":"abc"}') == "abc"
    assert reg.parse_token_response(b'{"access_token":"xyz"}') == "xyz"
    for bad in (b"", b"[]", b'{"token":""}', b"\xff"):
        with pytest.raises(PollamaError):
            reg.parse_token_response(bad)


@given(st.text(max_size=200))
def test_bearer_challenge_never_crashes(text: str) -> None:
    ch = reg.parse_bearer_challenge(text)
    assert ch is None or ch.realm.startswith(("http://", "https://"))


# --- range planning ------------------------------------------------------------------------


def test_plan_parts_examples() -> None:
    assert reg.plan_parts(0) == ()
    assert reg.plan_parts(1) == (reg.Part(index=0, start=0, end=1),)
    assert reg.plan_parts(8 * MIB - 1) == (reg.Part(index=0, start=0, end=8 * MIB - 1),)
    two = reg.plan_parts(16 * MIB + 1)
    assert [(p.start, p.end) for p in two] == [(0, 8 * MIB + 1), (8 * MIB + 1, 16 * MIB + 1)]
    smol = reg.plan_parts(98_362_432)  # the test model
    assert len(smol) == 8 and all(p.size >= 8 * MIB for p in smol)
    assert len(reg.plan_parts(50 * 1024 * MIB)) == reg.MAX_PARTS


@given(size=st.integers(0, 10**12), min_part=st.integers(1, 64 * MIB),
       max_parts=st.integers(1, 32))
def test_parts_cover_the_blob_exactly_once(size: int, min_part: int, max_parts: int) -> None:
    parts = reg.plan_parts(size, min_part=min_part, max_parts=max_parts)
    assert reg.check_plan(parts, size)
    assert sum(p.size for p in parts) == size
    covered = 0
    for i, p in enumerate(parts):  # contiguous, ordered, disjoint
        assert p.index == i and p.start == covered and p.end > p.start
        covered = p.end
    assert covered == size
    if size:
        assert 1 <= len(parts) <= max_parts
        sizes = {p.size for p in parts}
        assert max(sizes) - min(sizes) <= 1
        if len(parts) > 1:
            assert min(sizes) >= min_part


@given(size=st.integers(1, 10**10), data=st.data())
def test_resume_asks_exactly_for_the_missing_bytes(size: int, data: st.DataObject) -> None:
    parts = reg.plan_parts(size, min_part=max(1, size // 7))
    present = {}
    for p in parts:
        choice = data.draw(st.sampled_from(["none", "some", "all", "too_much"]))
        if choice == "some":
            present[p.index] = data.draw(st.integers(0, p.size))
        elif choice == "all":
            present[p.index] = p.size
        elif choice == "too_much":
            present[p.index] = p.size + data.draw(st.integers(1, 100))
    fetches = reg.plan_resume(parts, present)
    assert [f.part for f in fetches] == list(parts)
    # Kept prefixes plus requested ranges tile [0, size) exactly once.
    pieces = []
    for f in fetches:
        if f.restart:
            assert present[f.part.index] > f.part.size and f.have == 0
        else:
            assert f.have == present.get(f.part.index, 0)
        pieces.append((f.part.start, f.start))  # already on disk
        if f.remaining:
            first, last = f.range_header().removeprefix("bytes=").split("-")
            assert int(first) == f.start and int(last) == f.part.end - 1
            pieces.append((f.start, f.part.end))
    pos = 0
    for a, b in sorted(p for p in pieces if p[0] != p[1]):
        assert a == pos
        pos = b
    assert pos == size
    assert sum(f.remaining for f in fetches) == size - sum(f.have for f in fetches)


@given(size=st.integers(1, 10**12), max_parts=st.integers(1, 16))
def test_plan_sidecar_round_trips(size: int, max_parts: int) -> None:
    parts = reg.plan_parts(size, max_parts=max_parts, min_part=1)
    data = reg.encode_plan(HEX, size, parts)
    assert reg.decode_plan(data, HEX, size) == parts
    assert reg.decode_plan(data, HEX2, size) is None  # another blob's sidecar
    assert reg.decode_plan(data, HEX, size + 1) is None


@pytest.mark.parametrize("data", [
    b"", b"\xff", b"[]", b'{"digest":"sha256:' + HEX.encode() + b'","size":10,"parts":[[0,5]]}',
    b'{"digest":"sha256:' + HEX.encode() + b'","size":10,"parts":[[0,5],[4,10]]}',
    b'{"digest":"sha256:' + HEX.encode() + b'","size":10,"parts":[[0,5],[5,5],[5,10]]}',
    b'{"digest":"sha256:' + HEX.encode() + b'","size":10,"parts":[[0,true],[1,10]]}',
    b'{"digest":"sha256:' + HEX.encode() + b'","size":10,"parts":"x"}',
])
def test_bad_sidecars_are_ignored(data: bytes) -> None:
    assert reg.decode_plan(data, HEX, 10) is None


@given(st.binary(max_size=300))
def test_decode_plan_never_crashes(data: bytes) -> None:
    parts = reg.decode_plan(data, HEX, 1000)
    assert parts is None or reg.check_plan(parts, 1000)


def test_partial_filenames() -> None:
    assert reg.partial_filename(HEX) == f"sha256-{HEX}-partial"
    assert reg.partial_filename(HEX, 3) == f"sha256-{HEX}-partial-3"
    assert reg.parse_partial_filename(f"sha256-{HEX}-partial-3") == (HEX, 3)
    assert reg.parse_partial_filename(f"sha256-{HEX}-partial") == (HEX, None)
    for bad in (f"sha256-{HEX}", f"sha256-{HEX}-partial-", f"sha256-{HEX}-partial-01",
                f"sha256-{HEX}-partial-x", "../etc/passwd", f"sha256-{HEX.upper()}-partial"):
        assert reg.parse_partial_filename(bad) is None
    for bad_hex in ("../x", HEX.upper(), HEX[:-1]):
        with pytest.raises(BadRequest):
            reg.partial_filename(bad_hex)
    with pytest.raises(BadRequest):
        reg.partial_filename(HEX, -1)


def test_content_range() -> None:
    assert reg.parse_content_range("bytes 0-99/1000") == (0, 100, 1000)
    assert reg.parse_content_range("bytes 5-5/*") == (5, 6, None)
    for bad in ("bytes 5-4/10", "bytes */10", "items 0-1/2", "", "bytes 0-1"):
        assert reg.parse_content_range(bad) is None


# --- progress lines ------------------------------------------------------------------------


def test_pull_status_lines() -> None:
    lines = [
        reg.pulling_manifest(), reg.pulling(HEX, 98_362_432, 0),
        reg.pulling(HEX, 98_362_432, 1024), reg.verifying(), reg.writing_manifest(),
        reg.removing_unused_layers(), reg.success(),
    ]
    assert [p.to_dict() for p in lines] == [
        {"status": "pulling manifest"},
        {"status": "pulling b179c9523d0e", "digest": "sha256:" + HEX, "total": 98_362_432},
        {"status": "pulling b179c9523d0e", "digest": "sha256:" + HEX, "total": 98_362_432,
         "completed": 1024},
        {"status": "verifying sha256 digest"},
        {"status": "writing manifest"},
        {"status": "removing unused layers"},
        {"status": "success"},
    ]


def test_push_status_lines() -> None:
    assert reg.retrieving_manifest().to_dict() == {"status": "retrieving manifest"}
    assert reg.pushing(HEX2, 310, 310).to_dict() == {
        "status": "pushing c96f85a7d9fe", "digest": "sha256:" + HEX2, "total": 310,
        "completed": 310}
    assert reg.pushing_manifest().to_dict() == {"status": "pushing manifest"}
    assert reg.short_digest(HEX) == HEX[:12]


@pytest.mark.parametrize("status,body,text", [
    (404, b"", "file does not exist"),
    (401, b"{}", "unauthorized: access denied"),
    (500, b"boom", "500: boom"),
    (400, b'{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid"}]}',
     "400: manifest invalid"),
    (400, b'{"error":"invalid model name"}', "400: invalid model name"),
])
def test_registry_error_text(status: int, body: bytes, text: str) -> None:
    assert reg.registry_error_text(status, body) == text


# --- what to pull, what to prune ------------------------------------------------------------


def _layer(hex_digest: str, media: str = "application/vnd.ollama.image.model") -> Layer:
    return Layer(media_type=media, digest="sha256:" + hex_digest, size=1)


def test_blobs_of_dedupes() -> None:
    lic = _layer("3" * 64, "application/vnd.ollama.image.license")
    m = Manifest(config=_layer(HEX2), layers=(_layer(HEX), lic, lic))
    assert reg.blobs_of(m) == (_layer(HEX), lic, _layer(HEX2))


def test_unused_after_pull() -> None:
    cfg = _layer("c" * 64)
    old = Manifest(config=cfg, layers=(_layer("a" * 64), _layer("b" * 64)))
    new = Manifest(config=cfg, layers=(_layer("a" * 64), _layer("d" * 64)))
    other = Manifest(config=_layer("e" * 64), layers=(_layer("b" * 64),))
    assert reg.unused_after_pull(None, new, []) == frozenset()
    assert reg.unused_after_pull(old, new, [new]) == {"b" * 64}
    assert reg.unused_after_pull(old, new, [new, other]) == frozenset()


def test_missing_blobs() -> None:
    m = Manifest(config=_layer(HEX2), layers=(_layer(HEX),))
    assert reg.missing_blobs(m, [HEX]) == ("sha256:" + HEX2,)
    assert reg.missing_blobs(m, [HEX, HEX2]) == ()


# --- server side: /v2/ request parsing --------------------------------------------------------


def test_parse_repository() -> None:
    assert reg.parse_repository("library", "smol") == ("library", "smol")
    assert reg.parse_repository("team", "Llama-3.2") == ("team", "Llama-3.2")
    for ns, model in [("..", "m"), ("ns", ".."), ("%2e%2e", "m"), ("a%2fb", "m"), ("ns", ""),
                      ("n.s", "m"), ("ns", "m%00"), ("ns", "m\\x"), ("ns", "%zz"), ("-a", "m")]:
        with pytest.raises(reg.RegistryError) as info:
            reg.parse_repository(ns, model)
        assert info.value.code is reg.ErrorCode.NAME_INVALID and info.value.status_hint == 400


def test_parse_reference() -> None:
    assert reg.parse_reference("latest") == reg.Tag("latest")
    assert reg.parse_reference("sha256:" + HEX) == reg.DigestRef(HEX)
    assert reg.parse_reference("sha256%3A" + HEX.upper()) == reg.DigestRef(HEX)
    assert reg.parse_reference("sha256-" + HEX) == reg.Tag("sha256-" + HEX)  # a valid tag
    for bad, code in [("..", reg.ErrorCode.MANIFEST_INVALID),
                      ("a/b", reg.ErrorCode.MANIFEST_INVALID),
                      ("sha256:xyz", reg.ErrorCode.DIGEST_INVALID),
                      ("", reg.ErrorCode.MANIFEST_INVALID),
                      ("md5:abc", reg.ErrorCode.DIGEST_INVALID)]:
        with pytest.raises(reg.RegistryError) as info:
            reg.parse_reference(bad)
        assert info.value.code is code


def test_parse_blob_digest_and_upload_id() -> None:
    assert reg.parse_blob_digest("sha256:" + HEX) == HEX
    assert reg.parse_blob_digest("sha256%3a" + HEX) == HEX
    for bad in ("", "sha256:../../etc", "sha512:" + HEX, "sha256:" + HEX + "0", HEX):
        with pytest.raises(reg.RegistryError) as info:
            reg.parse_blob_digest(bad)
        assert info.value.code is reg.ErrorCode.DIGEST_INVALID
    assert reg.parse_upload_id("0" * 32) == "0" * 32
    for bad in ("", "../x", "0" * 31, "G" * 32):
        with pytest.raises(reg.RegistryError):
            reg.parse_upload_id(bad)


@given(st.text(max_size=120))
@settings(max_examples=300)
def test_path_parsers_only_pass_safe_segments(text: str) -> None:
    """Whatever a client puts in a path segment, what comes out is a valid name part, a 64-hex
    digest or a 32-hex id: never a separator, dot-dot, NUL or anything outside ASCII."""
    for parse in (lambda s: reg.parse_repository(s, "m"), lambda s: reg.parse_repository("n", s),
                  reg.parse_reference, reg.parse_blob_digest, reg.parse_upload_id):
        try:
            out = parse(text)
        except reg.RegistryError:
            continue
        values = out if isinstance(out, tuple) else (
            out.tag if isinstance(out, reg.Tag) else out.hex if isinstance(out, reg.DigestRef)
            else out,)
        for v in values:
            assert v and v not in (".", "..") and v.isascii()
            assert not set(v) & set("/\\\x00%?#")


def test_served_name_is_the_local_name() -> None:
    name = reg.served_name("library", "smol", "copy")
    assert name.display_shortest() == "smol:copy"
    assert reg.served_name("team", "m", "v1").display_shortest() == "team/m:v1"


def test_locations() -> None:
    assert reg.upload_location("library", "smol", "a" * 32) == (
        "/v2/library/smol/blobs/uploads/" + "a" * 32)
    assert reg.blob_location("ns", "m", HEX) == f"/v2/ns/m/blobs/sha256:{HEX}"


@pytest.mark.parametrize("header,size,expected", [
    (None, 10, None),
    ("bytes=0-4", 10, reg.ByteRange(0, 5)),
    ("bytes=5-", 10, reg.ByteRange(5, 10)),
    ("bytes=5-100", 10, reg.ByteRange(5, 10)),
    ("bytes=-3", 10, reg.ByteRange(7, 10)),
    ("bytes=-30", 10, reg.ByteRange(0, 10)),
    ("bytes=9-9", 10, reg.ByteRange(9, 10)),
    ("bytes=0-1,3-4", 10, None),  # several ranges: served whole
    ("items=0-1", 10, None),
    ("bytes=5-4", 10, None),
    ("bytes=-", 10, None),
])
def test_parse_range(header: str | None, size: int, expected: reg.ByteRange | None) -> None:
    assert reg.parse_range(header, size) == expected


@pytest.mark.parametrize("header,size", [("bytes=10-", 10), ("bytes=10-20", 10), ("bytes=-0", 10),
                                         ("bytes=0-", 0), ("bytes=-5", 0)])
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(reg.RegistryError) as info:
        reg.parse_range(header, size)
    assert info.value.status_hint == 416


@given(header=st.text(max_size=40) | st.from_regex(r"bytes=\d{0,4}-\d{0,4}", fullmatch=True),
       size=st.integers(0, 5000))
def test_parse_range_stays_inside_the_blob(header: str, size: int) -> None:
    try:
        r = reg.parse_range(header, size)
    except reg.RegistryError as exc:
        assert exc.status_hint == 416
        return
    if r is not None:
        assert 0 <= r.start < r.end <= size
        assert reg.content_range(r, size) == f"bytes {r.start}-{r.end - 1}/{size}"


def test_oci_error_body() -> None:
    err = reg.RegistryError(reg.ErrorCode.MANIFEST_UNKNOWN, "manifest unknown",
                            {"name": "library/x"})
    assert err.status_hint == 404
    assert json.loads(err.body()) == {"errors": [{"code": "MANIFEST_UNKNOWN",
                                                  "message": "manifest unknown",
                                                  "detail": {"name": "library/x"}}]}
    assert json.loads(reg.RegistryError(reg.ErrorCode.BLOB_UNKNOWN).body()) == {
        "errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown to registry"}]}


def test_manifest_body() -> None:
    assert reg.parse_manifest_body(HF_MANIFEST).config.hex == HEX2
    with pytest.raises(reg.RegistryError) as info:
        reg.parse_manifest_body(b'{"schemaVersion":1}')
    assert info.value.code is reg.ErrorCode.MANIFEST_INVALID


@pytest.mark.parametrize("method,target,handler,params", [
    ("GET", "/v2/", "registry_base", {}),
    ("HEAD", "/v2", "registry_base", {}),
    ("GET", "/v2/library/smol/manifests/latest", "registry_manifest",
     {"namespace": "library", "model": "smol", "reference": "latest"}),
    ("PUT", "/v2/library/smol/manifests/copy", "registry_manifest",
     {"namespace": "library", "model": "smol", "reference": "copy"}),
    ("GET", f"/v2/library/smol/blobs/sha256:{HEX}", "registry_blob",
     {"namespace": "library", "model": "smol", "digest": "sha256:" + HEX}),
    ("POST", "/v2/library/smol/blobs/uploads/", "registry_upload_start",
     {"namespace": "library", "model": "smol"}),
    ("PUT", "/v2/library/smol/blobs/uploads/" + "a" * 32 + "?digest=sha256%3A" + HEX,
     "registry_upload", {"namespace": "library", "model": "smol", "upload": "a" * 32}),
    ("POST", "/api/push", "push", {}),
])
def test_routes(method: str, target: str, handler: str, params: dict[str, str]) -> None:
    match = routes.match(method, target)
    assert match.handler == handler and match.params == params


def test_route_errors() -> None:
    with pytest.raises(PollamaError) as info:
        routes.match("DELETE", "/v2/library/smol/manifests/latest")
    assert info.value.status_hint == 405
    with pytest.raises(PollamaError) as info:
        routes.match("GET", "/v2/a/b/c/manifests/latest")
    assert info.value.status_hint == 404
