"""core.store_check: what startup cleanup and ``pollama doctor`` remove, keep and report."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pollama.core import manifest as mf
from pollama.core import store_check as sc

NOW = 1_800_000_000 * 10**9
HOUR = 3600 * 10**9


def hx(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def layer(media: str, seed: str, size: int = 10) -> mf.Layer:
    return mf.Layer(media_type=media, digest="sha256:" + hx(seed), size=size)


def manifest(*layers: mf.Layer, config: str = "config") -> mf.Manifest:
    return mf.Manifest(config=layer(mf.MEDIA_TYPE_CONFIG, config), layers=tuple(layers))


def blob(seed: str, size: int = 10, mtime: int = NOW) -> sc.Entry:
    return sc.Entry(area=sc.Area.BLOBS, path="sha256-" + hx(seed), size=size, mtime_ns=mtime)


def entry(area: sc.Area, path: str, size: int = 1, mtime: int = NOW,
          is_dir: bool = False) -> sc.Entry:
    return sc.Entry(area=area, path=path, size=size, mtime_ns=mtime, is_dir=is_dir)


def mfile(path: str, m: mf.Manifest) -> sc.ManifestFile:
    return sc.ManifestFile(path=path, data=m.to_json())


SMOL = manifest(layer(mf.MEDIA_TYPE_MODEL, "model"), layer(mf.MEDIA_TYPE_SYSTEM, "system"))
SMOL_FILE = mfile("registry.ollama.ai/library/smol/latest", SMOL)
SMOL_BLOBS = (blob("config"), blob("model"), blob("system"))


def removed(plan: sc.Plan) -> dict[str, sc.Reason]:
    return {a.entry.display(): a.reason for a in plan.remove}


def kept(plan: sc.Plan) -> dict[str, sc.Reason]:
    return {a.entry.display(): a.reason for a in plan.keep}


def test_clean_store_has_nothing_to_do() -> None:
    plan = sc.plan(sc.Listing(entries=SMOL_BLOBS, manifests=(SMOL_FILE,)), now_ns=NOW)
    assert plan == sc.Plan()
    assert sc.summary(plan, removed=()) == ["removed 0 items (0 B); 0 broken manifests"]


def test_temp_files_scratch_and_empty_dirs_are_removed() -> None:
    debris = (
        entry(sc.Area.BLOBS, ".tmp-blob-abc", 500),
        entry(sc.Area.BLOBS, ".tmp-quantize-Q4_0-x", 700),
        entry(sc.Area.BLOBS, ".tmp-dir", 50, is_dir=True),
        entry(sc.Area.MANIFESTS, "registry.ollama.ai/library/smol/.tmp-q-latest", 9),
        entry(sc.Area.MANIFESTS, "registry.ollama.ai/library/gone", 0, is_dir=True),
        entry(sc.Area.TMP, "pollama-pull-xyz", 10_000, is_dir=True),
        entry(sc.Area.TMP, "stray-file", 3),
    )
    plan = sc.plan(sc.Listing(entries=SMOL_BLOBS + debris, manifests=(SMOL_FILE,)),
                   now_ns=NOW)
    assert removed(plan) == {
        "blobs/.tmp-blob-abc": sc.Reason.TEMP,
        "blobs/.tmp-quantize-Q4_0-x": sc.Reason.TEMP,
        "blobs/.tmp-dir": sc.Reason.TEMP,
        "manifests/registry.ollama.ai/library/smol/.tmp-q-latest": sc.Reason.TEMP,
        "manifests/registry.ollama.ai/library/gone": sc.Reason.EMPTY_DIR,
        "tmp/pollama-pull-xyz": sc.Reason.SCRATCH,
        "tmp/stray-file": sc.Reason.SCRATCH,
    }
    assert plan.removed_bytes == 500 + 700 + 50 + 9 + 10_000 + 3
    assert plan.keep == () and plan.broken == ()


def test_unreferenced_blobs_are_removed_unless_noprune() -> None:
    listing = sc.Listing(entries=SMOL_BLOBS + (blob("orphan", 99),), manifests=(SMOL_FILE,))
    assert removed(sc.plan(listing, now_ns=NOW)) == {
        f"blobs/sha256-{hx('orphan')}": sc.Reason.UNREFERENCED}
    noprune = sc.plan(listing, now_ns=NOW, prune_blobs=False)
    assert noprune.remove == ()
    assert kept(noprune) == {f"blobs/sha256-{hx('orphan')}": sc.Reason.NOPRUNE}


def test_blobs_shared_by_two_manifests_stay_while_either_names_them() -> None:
    other = manifest(layer(mf.MEDIA_TYPE_MODEL, "model"), config="config2")
    listing = sc.Listing(entries=SMOL_BLOBS + (blob("config2"),),
                         manifests=(SMOL_FILE, mfile("h/n/other/latest", other)))
    assert sc.plan(listing, now_ns=NOW).remove == ()


def partial(seed: str, index: int | None, mtime: int, size: int = 100) -> sc.Entry:
    suffix = "" if index is None else f"-{index}"
    return sc.Entry(area=sc.Area.BLOBS, path=f"sha256-{hx(seed)}-partial{suffix}", size=size,
                    mtime_ns=mtime)


def test_partial_downloads_are_kept_for_resume_unless_stale_useless_or_done() -> None:
    day = sc.DAY_NS
    entries = SMOL_BLOBS + (
        partial("fresh", None, NOW - HOUR), partial("fresh", 0, NOW - 2 * day),
        partial("fresh", 1, NOW - HOUR),  # the newest file dates the download
        partial("edge", None, NOW - day), partial("edge", 0, NOW - day),
        partial("stale", None, NOW - day - 1), partial("stale", 0, NOW - day - 1),
        partial("lonely", 3, NOW),  # parts without their plan cannot be resumed
        partial("system", None, NOW), partial("system", 0, NOW),  # the blob is there
    )
    plan = sc.plan(sc.Listing(entries=entries, manifests=(SMOL_FILE,)), now_ns=NOW)
    assert removed(plan) == {
        f"blobs/sha256-{hx('stale')}-partial": sc.Reason.PARTIAL_STALE,
        f"blobs/sha256-{hx('stale')}-partial-0": sc.Reason.PARTIAL_STALE,
        f"blobs/sha256-{hx('lonely')}-partial-3": sc.Reason.PARTIAL_ORPHAN,
        f"blobs/sha256-{hx('system')}-partial": sc.Reason.PARTIAL_DONE,
        f"blobs/sha256-{hx('system')}-partial-0": sc.Reason.PARTIAL_DONE,
    }
    assert set(kept(plan).values()) == {sc.Reason.PARTIAL_RESUMABLE}
    assert len(plan.keep) == 5
    # The age threshold is a parameter: with one hour, "edge" and "fresh" go too.
    short = sc.plan(sc.Listing(entries=entries, manifests=(SMOL_FILE,)), now_ns=NOW,
                    partial_max_age_ns=HOUR - 1)
    assert short.keep == ()
    # NOPRUNE keeps unreferenced blobs; partials follow their own rule.
    assert removed(sc.plan(sc.Listing(entries=entries, manifests=(SMOL_FILE,)), now_ns=NOW,
                           prune_blobs=False)) == removed(plan)
    with pytest.raises(ValueError):
        sc.plan(sc.Listing(), now_ns=NOW, partial_max_age_ns=-1)


def test_unknown_files_in_blobs_are_left_alone() -> None:
    entries = SMOL_BLOBS + (entry(sc.Area.BLOBS, "README"), entry(sc.Area.BLOBS, "sha256-abc"),
                            entry(sc.Area.BLOBS, "somedir", is_dir=True),
                            entry(sc.Area.BLOBS, "sha256-" + "A" * 64))
    plan = sc.plan(sc.Listing(entries=entries, manifests=(SMOL_FILE,)), now_ns=NOW)
    assert plan == sc.Plan()


def test_broken_manifests_are_reported_never_removed() -> None:
    missing = manifest(layer(mf.MEDIA_TYPE_MODEL, "model"), layer(mf.MEDIA_TYPE_SYSTEM, "gone"))
    wrong_size = manifest(layer(mf.MEDIA_TYPE_MODEL, "model", size=11))
    hollow = manifest(layer(mf.MEDIA_TYPE_SYSTEM, "system"))
    files = (SMOL_FILE, mfile("registry.ollama.ai/library/smol/missing", missing),
             mfile("registry.ollama.ai/library/smol/size", wrong_size),
             mfile("registry.ollama.ai/library/smol/hollow", hollow))
    plan = sc.plan(sc.Listing(entries=SMOL_BLOBS, manifests=files), now_ns=NOW)
    assert plan.remove == ()
    got = {b.name: [p.kind for p in b.problems] for b in plan.broken}
    assert got == {
        "smol:hollow": [sc.ProblemKind.NO_MODEL_LAYER],
        "smol:missing": [sc.ProblemKind.MISSING_BLOB],
        "smol:size": [sc.ProblemKind.SIZE_MISMATCH],
    }
    lines = sc.summary(plan, removed=())
    assert lines[-1] == "removed 0 items (0 B); 3 broken manifests"
    assert f"broken manifest smol:missing: blob sha256:{hx('gone')} is missing" in lines


def test_an_unparseable_manifest_still_protects_the_blobs_it_names() -> None:
    text = SMOL.to_json()[:-20]  # cut short: not JSON any more
    files = (sc.ManifestFile(path="registry.ollama.ai/library/smol/latest", data=text),)
    plan = sc.plan(sc.Listing(entries=SMOL_BLOBS, manifests=files), now_ns=NOW)
    # The config and model digests are still in the text; the system layer's was cut off.
    assert removed(plan) == {f"blobs/sha256-{hx('system')}": sc.Reason.UNREFERENCED}
    assert [b.name for b in plan.broken] == ["smol:latest"]
    assert plan.broken[0].problems[0].kind is sc.ProblemKind.UNREADABLE


def test_an_unreadable_manifest_stops_all_blob_pruning() -> None:
    files = (SMOL_FILE, sc.ManifestFile(path="h/n/m/t", error="Permission denied"))
    listing = sc.Listing(entries=SMOL_BLOBS + (blob("orphan"),), manifests=files)
    plan = sc.plan(listing, now_ns=NOW)
    assert plan.remove == ()
    assert kept(plan) == {f"blobs/sha256-{hx('orphan')}": sc.Reason.UNSURE}
    assert [(b.path, str(b.problems[0])) for b in plan.broken] == [
        ("h/n/m/t", "unreadable: Permission denied")]


def test_referenced_digests_reads_either_separator_and_case() -> None:
    assert sc.referenced_digests(SMOL.to_json()) == SMOL.all_digests()
    text = f'garbage sha256-{hx("a").upper()} and sha256:{hx("b")} {{'.encode()
    assert sc.referenced_digests(text) == {hx("a"), hx("b")}


def test_manifest_problems_checks_the_config_bytes_when_given() -> None:
    cfg = b'{"model_format":"gguf"}'
    m = mf.Manifest(config=mf.Layer(media_type=mf.MEDIA_TYPE_CONFIG,
                                    digest="sha256:" + hashlib.sha256(cfg).hexdigest(),
                                    size=len(cfg)),
                    layers=(layer(mf.MEDIA_TYPE_MODEL, "model"),))
    sizes = {m.config.hex: len(cfg), hx("model"): 10}
    assert sc.manifest_problems(m, sizes, cfg) == ()
    assert sc.manifest_problems(m, sizes) == ()
    bad = sc.manifest_problems(m, sizes, b'{"model_format":"ggux"}')
    assert [p.kind for p in bad] == [sc.ProblemKind.BAD_CONFIG]
    not_json = b"[1, 2, 3] :)"
    m2 = mf.Manifest(config=mf.Layer(media_type=mf.MEDIA_TYPE_CONFIG,
                                     digest="sha256:" + hashlib.sha256(not_json).hexdigest(),
                                     size=len(not_json)), layers=m.layers)
    bad = sc.manifest_problems(m2, {m2.config.hex: len(not_json), hx("model"): 10}, not_json)
    assert [p.kind for p in bad] == [sc.ProblemKind.BAD_CONFIG]
    assert bad[0].digest == m2.config.digest


@pytest.mark.parametrize("value,expected", [
    ("", False), ("0", False), ("false", False), ("F", False), ("FALSE", False), ("False", False),
    ("1", True), ("true", True), ("T", True), ("yes", True), ("anything", True), (" 1 ", True),
    ('"0"', False),
])
def test_env_flag_reads_like_ollamas_envconfig_bool(value: str, expected: bool) -> None:
    assert sc.env_flag(value) is expected


@pytest.mark.parametrize("path", ["", "..", "a/../b", "/abs", "a//b", "."])
def test_entries_only_take_plain_relative_paths(path: str) -> None:
    with pytest.raises(ValueError):
        sc.Entry(area=sc.Area.BLOBS, path=path)


def test_summary_of_a_dry_run_says_what_would_go() -> None:
    listing = sc.Listing(entries=SMOL_BLOBS + (entry(sc.Area.BLOBS, ".tmp-blob-1", 2000),),
                         manifests=(SMOL_FILE,))
    plan = sc.plan(listing, now_ns=NOW)
    assert sc.summary(plan) == ["would remove blobs/.tmp-blob-1 (unfinished write, 2 KB)",
                                "would remove 1 item (2 KB); 0 broken manifests"]
    action = plan.remove[0]
    assert sc.summary(plan, removed=(), failed=[(action, "Permission denied")]) == [
        "could not remove blobs/.tmp-blob-1: Permission denied",
        "removed 0 items (0 B); 0 broken manifests"]


# --- property: whatever the store holds, nothing a manifest names is removed ----------------

SEEDS = st.sampled_from(["a", "b", "c", "d", "e"])


@st.composite
def listings(draw: st.DrawFn) -> sc.Listing:
    manifests = []
    for i in range(draw(st.integers(0, 3))):
        seeds = draw(st.lists(SEEDS, min_size=0, max_size=3))
        m = manifest(*(layer(mf.MEDIA_TYPE_MODEL, s) for s in seeds), config=draw(SEEDS))
        data = m.to_json()
        if draw(st.booleans()):
            data = data[: draw(st.integers(0, len(data)))]
        manifests.append(sc.ManifestFile(path=f"h/n/m{i}/latest", data=data))
    entries = [blob(s, mtime=draw(st.integers(0, NOW))) for s in draw(st.sets(SEEDS))]
    for s in draw(st.sets(SEEDS)):
        for index in draw(st.sets(st.sampled_from([None, 0, 1]))):
            entries.append(partial(s, index, draw(st.integers(NOW - 3 * sc.DAY_NS, NOW))))
    return sc.Listing(entries=tuple(entries), manifests=tuple(manifests))


@given(listings(), st.booleans(), st.integers(0, 3 * sc.DAY_NS))
def test_plan_never_removes_what_is_named_or_resumable(listing: sc.Listing, prune: bool,
                                                       max_age: int) -> None:
    plan = sc.plan(listing, now_ns=NOW, prune_blobs=prune, partial_max_age_ns=max_age)
    named: set[str] = set()
    for f in listing.manifests:
        named |= sc.referenced_digests(f.data)
    present = {e.path[7:] for e in listing.entries if len(e.path) == 71}
    for action in plan.remove:
        name = action.entry.name
        assert action.entry.area is sc.Area.BLOBS
        if action.reason is sc.Reason.UNREFERENCED:
            assert prune and name[7:] not in named
        else:
            assert "-partial" in name
            group = [e for e in listing.entries if e.name.startswith(name[:71] + "-partial")]
            has_plan = any(e.name.endswith("-partial") for e in group)
            newest = max(e.mtime_ns for e in group)
            assert (name[7:71] in present or not has_plan or NOW - newest > max_age)
    assert len(plan.remove) + len(plan.keep) <= len(listing.entries)
    assert {id(a.entry) for a in plan.remove}.isdisjoint({id(a.entry) for a in plan.keep})
