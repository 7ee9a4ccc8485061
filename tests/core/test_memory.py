"""core/memory.py: estimates, GPU layer fitting, the ps PROCESSOR label, tool-output parsers."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pollama.core import memory as m
from pollama.core.gguf_details import ModelFacts
from pollama.core.memory import (
    AUTO_PARALLEL,
    Device,
    Estimate,
    Inventory,
    ModelShape,
    Placement,
    estimate,
    fit,
    kv_streams,
    parallel_choices,
    plan,
    processor_label,
)

MiB, GiB = m.MiB, m.GiB
RESERVE = 457 * MiB  # Ollama's cudaMinimumMemory

SMOLLM2 = ModelShape(weights_bytes=98_362_432, block_count=30, embedding_length=576, head_count=9,
                     head_count_kv=3, context_length_train=8192, n_vocab=49152)

# A 7B-ish llama with round numbers: 32 blocks of 100 MiB, a 200 MiB output layer, full MHA
# (32 KV heads × 128), so at num_ctx 2048 each block also carries 32 MiB of f16 KV cache.
LLAMA7B = ModelShape(weights_bytes=32 * 100 * MiB + 200 * MiB, block_count=32,
                     embedding_length=4096, head_count=32, head_count_kv=32,
                     context_length_train=4096, n_vocab=32000, output_bytes=200 * MiB)
LAYER7B = 132 * MiB


def ram(free: int = 16 * GiB, total: int = 32 * GiB) -> Device:
    return Device(id="cpu", kind="cpu", name="CPU", total=total, free=free)


def gpu(i: int, free: int, total: int | None = None, kind: str = "cuda") -> Device:
    return Device(id=f"{kind}:{i}", kind=kind, name=f"GPU {i}", total=total or free, free=free)


def inv(*devices: Device) -> Inventory:
    return Inventory(devices=devices)


# ------------------------------------------------------------------------------- estimates


def test_smollm2_kv_cache() -> None:
    e = estimate(SMOLLM2, num_ctx=2048, num_parallel=1)
    assert SMOLLM2.head_dim == 64
    assert e.kv_cache == 2 * 30 * 2048 * 3 * 64 * 2 == 47_185_920
    assert e.weights == 98_362_432
    assert e.total == e.weights + e.kv_cache + e.compute_buffer + e.overhead


def test_kv_scales_with_parallel_and_cache_type() -> None:
    one = estimate(SMOLLM2, num_ctx=2048).kv_cache
    assert estimate(SMOLLM2, num_ctx=2048, num_parallel=4).kv_cache == 4 * one
    q8 = estimate(SMOLLM2, num_ctx=2048, kv_bytes_per_elem=m.kv_bytes_per_element("q8_0"))
    assert q8.kv_cache == one // 2
    assert m.kv_bytes_per_element("q4_0") == 0.5
    assert m.kv_bytes_per_element("") == m.kv_bytes_per_element("bogus") == 2.0


def test_key_value_length_override() -> None:
    shape = ModelShape(weights_bytes=1000, block_count=2, embedding_length=2048, head_count=8,
                       head_count_kv=2, context_length_train=None, key_length=128,
                       value_length=64)
    assert m.kv_cache_bytes(shape, num_ctx=10) == 2 * 10 * 2 * (128 + 64) * 2


def test_smollm2_graph_is_ollamas_llama_formula() -> None:
    e = estimate(SMOLLM2, num_ctx=2048)
    b, c, emb, h, v = 512, 2048, 576, 9, 49152
    assert e.compute_buffer == max(4 * b * (1 + 4 * emb + c * (1 + h)), 4 * b * (emb + v))
    assert e.compute_buffer == 101_842_944  # the vocabulary term dominates for SmolLM2
    assert e.compute_buffer_partial == 4 * b * emb + max(
        4 * b * (1 + emb + max(c, emb)) + emb * emb * 9 // 16 + 4 * c * (b * h + 64 * 3),
        4 * b * (emb + v) + emb * v * 105 // 128)


def test_batch_is_capped_by_context() -> None:
    small = estimate(SMOLLM2, num_ctx=64, num_batch=512)
    assert (small.compute_buffer, small.compute_buffer_partial) == m.graph_sizes(
        SMOLLM2, context=64, batch=64)


def test_projector_is_overhead() -> None:
    e = estimate(SMOLLM2, num_ctx=2048, projector_bytes=10 * MiB)
    assert e.overhead == 10 * MiB
    assert e.total == estimate(SMOLLM2, num_ctx=2048).total + 10 * MiB


@pytest.mark.parametrize("kwargs", [{"num_ctx": 0}, {"num_ctx": 8, "num_parallel": 0},
                                    {"num_ctx": 8, "num_batch": 0},
                                    {"num_ctx": 8, "kv_bytes_per_elem": 0.0}])
def test_estimate_rejects_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        estimate(SMOLLM2, **kwargs)


def test_shape_from_facts() -> None:
    facts = ModelFacts(architecture="llama", parameter_count=134_515_008, file_type="Q4_1",
                       context_length=8192, embedding_length=576, block_count=30, head_count=9,
                       head_count_kv=3, chat_template=None, bos_token="", eos_token="")
    shape = m.shape_from_facts(facts, 98_362_432, n_vocab=49152)
    assert (shape.block_count, shape.embedding_length, shape.head_count, shape.head_count_kv,
            shape.context_length_train, shape.n_vocab) == (30, 576, 9, 3, 8192, 49152)
    # tied embeddings: 49152 × 576 of 134.5M parameters, at the file's bytes per parameter
    assert shape.output_bytes == 98_362_432 * 49152 * 576 // 134_515_008
    assert estimate(shape, num_ctx=2048).kv_cache == 47_185_920


def test_shape_from_sparse_facts() -> None:
    facts = ModelFacts(architecture="bert", parameter_count=0, file_type="", context_length=None,
                       embedding_length=None, block_count=None, head_count=None,
                       head_count_kv=None, chat_template=None, bos_token="", eos_token="")
    shape = m.shape_from_facts(facts, 5000)
    assert (shape.block_count, shape.head_dim, shape.output_layer_bytes) == (0, 0, 5000)
    e = estimate(shape, num_ctx=512)
    assert e.kv_cache == 0
    p = fit(e, shape, inv(ram(), gpu(0, 8 * GiB)))
    assert (p.gpu_layers, p.layer_count) == (1, 1)


def test_default_num_ctx_tiers() -> None:
    assert m.default_num_ctx(inv(ram())) == 4096
    assert m.default_num_ctx(inv(ram(), gpu(0, 24 * GiB))) == 32768
    assert m.default_num_ctx(inv(ram(), gpu(0, 24 * GiB), gpu(1, 24 * GiB))) == 262144


# ------------------------------------------------------------------------------- fit

E_SMOL = estimate(SMOLLM2, num_ctx=2048)
E_7B = estimate(LLAMA7B, num_ctx=2048)


def test_7b_fixture_numbers() -> None:
    assert E_7B.kv_cache == 2 * 32 * 2048 * 32 * 128 * 2 == 1 * GiB
    assert m._layer_sizes(E_7B, LLAMA7B) == [LAYER7B] * 32 + [200 * MiB]
    assert E_7B.compute_buffer_partial == 202_377_216  # > the full-offload graph


def test_fit_cpu_only() -> None:
    p = fit(E_SMOL, SMOLLM2, inv(ram()))
    assert p == Placement(gpu_layers=0, layer_count=31, size=E_SMOL.total, size_vram=0,
                          size_cpu=E_SMOL.total)
    assert p.processor == "100% CPU" and p.fits


def test_fit_one_big_gpu_takes_every_layer() -> None:
    p = fit(E_SMOL, SMOLLM2, inv(ram(), gpu(0, 24 * GiB)))
    assert p.gpu_layers == 31 == SMOLLM2.block_count + 1 and p.full_offload
    assert p.devices == ("cuda:0",) and p.device_layers == (31,)
    # reserve + full-offload graph + every layer (weights and KV cache)
    assert p.size_vram == RESERVE + E_SMOL.compute_buffer + E_SMOL.weights + E_SMOL.kv_cache
    assert p.size == p.size_vram and p.size_cpu == 0
    assert p.processor == "100% GPU"
    p7 = fit(E_7B, LLAMA7B, inv(ram(), gpu(0, 24 * GiB)))
    assert p7.gpu_layers == 33 and p7.size_cpu == 0


def test_fit_small_gpu_partial_offload() -> None:
    # room for layers = 2 GiB − 457 MiB reserve − larger graph (partial, 202,377,216 B)
    #                   − one 132 MiB layer kept as buffer = 1,327,495,168 B = 9.59 layers ⇒ 9
    room = 2 * GiB - RESERVE - E_7B.compute_buffer_partial - LAYER7B
    assert room == 1_327_495_168 and room // LAYER7B == 9
    p = fit(E_7B, LLAMA7B, inv(ram(), gpu(0, 2 * GiB)))
    assert p.gpu_layers == 9 and not p.full_offload
    assert p.size_vram == RESERVE + E_7B.compute_buffer_partial + 9 * LAYER7B == 1_927_284_736
    assert p.size_cpu == 23 * LAYER7B + 200 * MiB
    assert p.size == p.size_vram + p.size_cpu
    assert p.processor == "64%/36% CPU/GPU"
    assert p.vram_fits and p.fits


def test_fit_gpu_overhead_costs_layers() -> None:
    p = fit(E_7B, LLAMA7B, inv(ram(), gpu(0, 2 * GiB)), gpu_overhead=LAYER7B * 2)
    assert p.gpu_layers == 7


def test_fit_gpu_too_small_for_anything() -> None:
    p = fit(E_7B, LLAMA7B, inv(ram(), gpu(0, 512 * MiB)))
    assert p.gpu_layers == 0 and p.size_vram == 0 and p.size == E_7B.total


def test_fit_num_gpu_zero_forces_cpu() -> None:
    p = fit(E_SMOL, SMOLLM2, inv(ram(), gpu(0, 24 * GiB)), num_gpu=0)
    assert p.gpu_layers == 0 and p.size_vram == 0 and p.devices == ()


def test_fit_num_gpu_larger_than_layers_is_capped() -> None:
    p = fit(E_SMOL, SMOLLM2, inv(ram(), gpu(0, 24 * GiB)), num_gpu=999)
    assert p.gpu_layers == 31 and p.full_offload and p.vram_fits


def test_fit_explicit_num_gpu_below_capacity() -> None:
    p = fit(E_7B, LLAMA7B, inv(ram(), gpu(0, 24 * GiB)), num_gpu=5)
    assert p.gpu_layers == 5
    assert p.size_vram == RESERVE + E_7B.compute_buffer_partial + 5 * LAYER7B
    assert p.size_cpu == 27 * LAYER7B + 200 * MiB


def test_fit_explicit_num_gpu_beyond_vram_is_honoured_but_flagged() -> None:
    # Ollama passes an explicit num_gpu to llama.cpp as is; we say it will not fit.
    p = fit(E_7B, LLAMA7B, inv(ram(), gpu(0, 2 * GiB)), num_gpu=20)
    assert p.gpu_layers == 20 and not p.vram_fits and not p.fits
    assert p.device_sizes[0] > 2 * GiB


def test_fit_ram_too_short() -> None:
    p = fit(E_SMOL, SMOLLM2, inv(ram(free=100 * MiB)))
    assert not p.fits and p.vram_fits
    assert not p.fits_in(100 * MiB) and p.fits_in(E_SMOL.total)
    assert fit(E_SMOL, SMOLLM2, inv()).fits  # RAM unknown: not a reason to refuse


def test_fit_partial_offload_needs_only_the_cpu_part_in_ram() -> None:
    p_cpu = 23 * LAYER7B + 200 * MiB
    p = fit(E_7B, LLAMA7B, inv(ram(free=p_cpu), gpu(0, 2 * GiB)))
    assert p.size_cpu == p_cpu and p.fits


def test_fit_picks_gpu_with_most_free_memory() -> None:
    p = fit(E_7B, LLAMA7B, inv(ram(), gpu(0, 8 * GiB, 24 * GiB), gpu(1, 20 * GiB, 24 * GiB)))
    assert p.devices == ("cuda:1",) and p.gpu_layers == 33


def test_fit_spreads_over_gpus_when_none_holds_it_alone() -> None:
    # Each 3.5 GiB GPU keeps 3584 − 457 − 193.0 − 132 MiB = 2801.99 MiB for layers: 21 blocks
    # alone, so no single GPU takes all 33 layers; together they take 16 + 16 blocks + output.
    p = fit(E_7B, LLAMA7B, inv(ram(), gpu(0, 3584 * MiB), gpu(1, 3584 * MiB)))
    assert p.gpu_layers == 33 and p.full_offload and p.size_cpu == 0
    assert p.devices == ("cuda:0", "cuda:1") and sorted(p.device_layers) == [16, 17]
    # multi-GPU always uses the partial graph, and each GPU pays its own reserve and graph
    assert p.size_vram == (2 * (RESERVE + E_7B.compute_buffer_partial)
                           + E_7B.weights + E_7B.kv_cache)


def test_fit_partial_spread_over_gpus() -> None:
    # Each 2.5 GiB GPU: 2560 − 457 − 193.0 − 132 MiB = 1777.99 MiB ⇒ 13 layers each.
    p = fit(E_7B, LLAMA7B, inv(ram(), gpu(0, 2560 * MiB), gpu(1, 2560 * MiB)))
    assert p.gpu_layers == 26 and p.device_layers == (13, 13)
    assert p.size_cpu == 6 * LAYER7B + 200 * MiB


def test_fit_does_not_mix_gpu_kinds() -> None:
    p = fit(E_7B, LLAMA7B, inv(ram(), gpu(0, 2560 * MiB), gpu(0, 2560 * MiB, kind="rocm")))
    assert p.gpu_layers == 13 and len(p.devices) == 1


def test_fit_projector_on_first_gpu() -> None:
    e = estimate(SMOLLM2, num_ctx=2048, projector_bytes=50 * MiB)
    p = fit(e, SMOLLM2, inv(ram(), gpu(0, 24 * GiB)))
    assert p.size_vram == RESERVE + e.compute_buffer + e.weights + e.kv_cache + 50 * MiB
    assert p.size == p.size_vram


def test_fit_metal_has_no_reserve_and_full_graph() -> None:
    metal = Device(id="metal", kind="metal", name="Apple GPU", total=10 * GiB, free=10 * GiB)
    p = fit(E_SMOL, SMOLLM2, inv(ram(), metal))
    assert p.size_vram == E_SMOL.total and p.processor == "100% GPU"


def test_reprs_are_python() -> None:
    p = fit(E_7B, LLAMA7B, inv(ram(), gpu(0, 2 * GiB)))
    ns = {"Placement": Placement, "Estimate": Estimate, "ModelShape": ModelShape,
          "Device": Device, "Inventory": Inventory}
    for obj in (p, E_7B, LLAMA7B, inv(ram(), gpu(0, 2 * GiB))):
        assert eval(repr(obj), ns) == obj


@pytest.mark.parametrize("kwargs", [
    {"id": "x", "kind": "tpu", "name": "", "total": 1, "free": 1},
    {"id": "", "kind": "cpu", "name": "", "total": 1, "free": 1},
    {"id": "cpu", "kind": "cpu", "name": "", "total": 1, "free": 2},
    {"id": "cpu", "kind": "cpu", "name": "", "total": -1, "free": 0},
])
def test_device_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Device(**kwargs)


def test_inventory_helpers() -> None:
    i = inv(ram(), gpu(0, GiB), gpu(1, 2 * GiB, kind="rocm"))
    assert i.cpu() == ram() and [d.id for d in i.gpus()] == ["cuda:0", "rocm:1"]
    assert inv(gpu(0, GiB)).cpu() is None
    with pytest.raises(ValueError):
        inv(ram(), ram())


# ------------------------------------------------------------------------------- Hypothesis

shapes = st.builds(
    lambda blocks, emb_heads, kv_div, weights, vocab: ModelShape(
        weights_bytes=weights, block_count=blocks, embedding_length=emb_heads[0] * emb_heads[1],
        head_count=emb_heads[1], head_count_kv=max(1, emb_heads[1] // kv_div),
        context_length_train=None, n_vocab=vocab),
    st.integers(0, 80), st.tuples(st.integers(1, 256), st.integers(1, 64)),
    st.sampled_from([1, 2, 4, 8]), st.integers(0, 80 * GiB), st.none() | st.integers(0, 300_000))


@st.composite
def inventories(draw: st.DrawFn) -> Inventory:
    devices: list[Device] = []
    if draw(st.booleans()):
        total = draw(st.integers(0, 512 * GiB))
        devices.append(Device(id="cpu", kind="cpu", name="CPU", total=total,
                              free=draw(st.integers(0, total))))
    for i in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["cuda", "rocm", "metal"]))
        total = draw(st.integers(0, 96 * GiB))
        devices.append(Device(id=f"{kind}:{i}", kind=kind, name="g", total=total,
                              free=draw(st.integers(0, total))))
    return Inventory(devices=tuple(devices))


@settings(max_examples=300)
@given(shapes, inventories(), st.integers(1, 131072), st.integers(1, 8),
       st.integers(-1, 200), st.integers(0, 2 * GiB), st.integers(0, 2 * GiB))
def test_fit_invariants(shape: ModelShape, inventory: Inventory, num_ctx: int, parallel: int,
                        num_gpu: int, gpu_overhead: int, projector: int) -> None:
    e = estimate(shape, num_ctx=num_ctx, num_parallel=parallel, projector_bytes=projector)
    p = fit(e, shape, inventory, num_gpu=num_gpu, gpu_overhead=gpu_overhead)
    assert p.size_vram + p.size_cpu == p.size
    assert 0 <= p.gpu_layers <= shape.block_count + 1 == p.layer_count
    free = {d.id: d.free for d in inventory.devices}
    if num_gpu < 0:  # automatic placement never exceeds free VRAM (minus the overhead)
        assert p.vram_fits
        for dev, size in zip(p.devices, p.device_sizes):
            assert size + gpu_overhead <= free[dev]
    elif num_gpu == 0 or not inventory.gpus():
        assert p.gpu_layers == 0 and p.size == e.total
    else:
        assert p.gpu_layers == min(num_gpu, shape.block_count + 1)
    if p.gpu_layers == 0:
        assert p.size == e.total and p.devices == ()
    else:
        assert len({d.split(":")[0] for d in p.devices}) == 1  # one backend per runner
    assert processor_label(p.size, p.size_vram) != "Unknown" or p.size == 0


# ------------------------------------------------------------------------------- processor


@pytest.mark.parametrize(("size", "vram", "label"), [
    (1000, 0, "100% CPU"),
    (1000, 1000, "100% GPU"),
    (100, 52, "48%/52% CPU/GPU"),
    (5_320_476_672, 1_927_284_736, "64%/36% CPU/GPU"),
    (200, 199, "1%/99% CPU/GPU"),  # 0.5% CPU rounds away from zero as Go's math.Round does
    (200, 1, "100%/0% CPU/GPU"),
    (100, 150, "Unknown"),
    (0, 5, "Unknown"),
    (0, 0, "100% CPU"),  # Ollama tests size_vram == 0 first
])
def test_processor_label(size: int, vram: int, label: str) -> None:
    assert processor_label(size, vram) == label


# ------------------------------------------------------------------------------- parsers

NVIDIA = """\
0, NVIDIA GeForce RTX 4090, 24564, 23890
1, NVIDIA RTX A6000, 49140, 1024
"""


def test_parse_nvidia_smi() -> None:
    devs = m.parse_nvidia_smi(NVIDIA)
    assert devs == (
        Device(id="cuda:0", kind="cuda", name="NVIDIA GeForce RTX 4090", total=24564 * MiB,
               free=23890 * MiB),
        Device(id="cuda:1", kind="cuda", name="NVIDIA RTX A6000", total=49140 * MiB,
               free=1024 * MiB),
    )


@pytest.mark.parametrize(("text", "ids"), [
    ("", []),
    ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n", []),
    ("0, Tesla T4, [N/A], [N/A]\n1, Tesla T4, 15360, 15000\n", ["cuda:1"]),
    ("0, Weird, GPU, Name, 8192, 4096\n", ["cuda:0"]),
    ("0, A, 100, 200\n", ["cuda:0"]),  # free above total is clamped
    ("x, A, 1, 1\n-1, B, 1, 1\n0, C, -5, 1\n0, D, 1.5, 1\n", []),
    ("0, A, 1, 1\r\n0, A, 1, 1\n", ["cuda:0"]),  # duplicate index kept once
    ("index, name, memory.total [MiB], memory.free [MiB]\n", []),
])
def test_parse_nvidia_smi_odd_output(text: str, ids: list[str]) -> None:
    devs = m.parse_nvidia_smi(text)
    assert [d.id for d in devs] == ids
    assert all(d.free <= d.total for d in devs)
    if text.startswith("0, Weird"):
        assert devs[0].name == "Weird, GPU, Name"


ROCM = """\
WARNING: AMD GPU device(s) is/are in a low-power state. Check power control/runtime_status

{"card0": {"Card series": "Navi 31 [Radeon RX 7900 XT/7900 XTX]", "Card model": "0x744c",
 "Card vendor": "Advanced Micro Devices, Inc. [AMD/ATI]", "Card SKU": "EXT",
 "VRAM Total Memory (B)": "25753026560", "VRAM Total Used Memory (B)": "1077809152"},
 "card1": {"VRAM Total Memory (B)": 17163091968, "VRAM Total Used Memory (B)": "0"},
 "system": {"Driver version": "6.7.0"}}
"""


def test_parse_rocm_smi() -> None:
    devs = m.parse_rocm_smi(ROCM)
    assert devs == (
        Device(id="rocm:0", kind="rocm", name="Navi 31 [Radeon RX 7900 XT/7900 XTX]",
               total=25_753_026_560, free=25_753_026_560 - 1_077_809_152),
        Device(id="rocm:1", kind="rocm", name="AMD GPU", total=17_163_091_968,
               free=17_163_091_968),
    )


@pytest.mark.parametrize("text", [
    "", "not json", "{", "[1, 2]", '{"card0": 5}', '{"card0": {}}', "null",
    '{"card0": {"VRAM Total Memory (B)": "N/A", "VRAM Total Used Memory (B)": "0"}}',
    '{"cardX": {"VRAM Total Memory (B)": "1", "VRAM Total Used Memory (B)": "0"}}',
    '{"card0": {"VRAM Total Memory (B)": true, "VRAM Total Used Memory (B)": "0"}}',
    "[" * 100_000, "{" * 100_000,
    "ERROR: No AMD GPUs specified\n",
])
def test_parse_rocm_smi_malformed(text: str) -> None:
    assert m.parse_rocm_smi(text) == ()


def test_parse_rocm_smi_used_above_total() -> None:
    devs = m.parse_rocm_smi('{"card2": {"VRAM Total Memory (B)": "10", '
                            '"VRAM Total Used Memory (B)": "20"}} trailing')
    assert devs == (Device(id="rocm:2", kind="rocm", name="AMD GPU", total=10, free=0),)


MEMINFO = """\
MemTotal:       32585612 kB
MemFree:         1234567 kB
MemAvailable:   20971520 kB
Buffers:          345678 kB
Cached:          9876543 kB
SwapCached:            0 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
"""


def test_parse_meminfo() -> None:
    d = m.parse_meminfo(MEMINFO)
    assert d == Device(id="cpu", kind="cpu", name="CPU", total=32585612 * 1024,
                       free=20971520 * 1024)


def test_parse_meminfo_without_memavailable() -> None:
    text = "\n".join(line for line in MEMINFO.splitlines() if "Available" not in line)
    d = m.parse_meminfo(text)
    assert d is not None and d.free == (1234567 + 345678 + 9876543) * 1024


@pytest.mark.parametrize("text", ["", "garbage", "MemTotal: lots kB", "MemTotal:",
                                  "MemTotal: 0 kB", "MemTotal: -5 kB"])
def test_parse_meminfo_malformed(text: str) -> None:
    assert m.parse_meminfo(text) is None


def test_parse_meminfo_clamps_free() -> None:
    d = m.parse_meminfo("MemTotal: 10 kB\nMemAvailable: 20 kB\n")
    assert d is not None and d.free == d.total == 10240


def test_cpu_device() -> None:
    assert m.cpu_device(0) is None
    assert m.cpu_device(100) == Device(id="cpu", kind="cpu", name="CPU", total=100, free=100)
    d = m.cpu_device(100, 500)
    assert d is not None and d.free == 100


@pytest.mark.parametrize(("text", "total"), [
    ("17179869184\n", 17179869184 * 2 // 3),
    ("hw.memsize: 68719476736\n", 68719476736 * 3 // 4),
    ("sysctl: unknown oid 'hw.memsize'\n", None),
    ("", None),
    ("0", None),
])
def test_parse_sysctl_memsize(text: str, total: int | None) -> None:
    d = m.parse_sysctl_memsize(text)
    assert (d.total if d else None) == total
    if d is not None:
        assert d.kind == "metal" and d.free == d.total


@given(st.text())
def test_parsers_never_raise(text: str) -> None:
    m.parse_nvidia_smi(text)
    m.parse_rocm_smi(text)
    m.parse_meminfo(text)
    m.parse_sysctl_memsize(text)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=12),
                    lambda c: st.lists(c, max_size=4)
                    | st.dictionaries(st.sampled_from(["card0", "card1", "VRAM Total Memory (B)",
                                                       "VRAM Total Used Memory (B)",
                                                       "Card series", "x"]), c, max_size=4),
                    max_leaves=12))
def test_parse_rocm_smi_any_json(value: Any) -> None:
    import json

    for d in m.parse_rocm_smi(json.dumps(value)):
        assert d.kind == "rocm" and 0 <= d.free <= d.total


def test_fit_projector_gpu_always_used() -> None:
    # The projector is reserved on the first (most free) GPU; that GPU must then hold layers,
    # even when the other has more room left after the projector.
    e = estimate(LLAMA7B, num_ctx=2048, projector_bytes=3 * GiB)
    p = fit(e, LLAMA7B, inv(ram(), gpu(0, 5 * GiB), gpu(1, 4 * GiB)), num_gpu=1)
    assert p.devices == ("cuda:0",) and p.device_layers == (1,)
    assert p.device_sizes[0] == RESERVE + e.compute_buffer_partial + LAYER7B + 3 * GiB
    assert p.vram_fits


# ---------------------------------------------------------------------------------------------
# Slots per runner (POLLAMA_NUM_PARALLEL unset = automatic)


def test_kv_streams_add_a_spare_to_several_slots() -> None:
    assert [kv_streams(n) for n in (1, 2, 4, 8)] == [1, 3, 5, 9]


def test_parallel_choices() -> None:
    assert parallel_choices(0) == (AUTO_PARALLEL, 1) == (4, 1)
    assert parallel_choices(3) == (3,)
    assert parallel_choices(0, embedding_only=True) == (1,)
    assert parallel_choices(2, embedding_only=True) == (2,)  # configured wins


def test_plan_takes_four_slots_when_their_kv_cache_fits() -> None:
    parallel, placement = plan(SMOLLM2, inv(ram()), num_ctx=4096, num_batch=512)
    assert parallel == 4
    four = estimate(SMOLLM2, num_ctx=4096, num_parallel=5)  # and the spare stream
    assert placement.size == fit(four, SMOLLM2, inv(ram())).size


def test_plan_falls_back_to_one_slot_when_four_do_not_fit() -> None:
    one = fit(estimate(SMOLLM2, num_ctx=4096), SMOLLM2, inv(ram())).size
    four = fit(estimate(SMOLLM2, num_ctx=4096, num_parallel=5), SMOLLM2, inv(ram())).size
    assert one < four
    # short of free RAM for four
    parallel, placement = plan(SMOLLM2, inv(ram(free=(one + four) // 2)), num_ctx=4096,
                               num_batch=512)
    assert (parallel, placement.size) == (1, one)
    # or past the budget for all models
    assert plan(SMOLLM2, inv(ram()), num_ctx=4096, num_batch=512, budget=four - 1)[0] == 1
    # nothing fits: the last choice, as the scheduler then decides whether to load at all
    assert plan(SMOLLM2, inv(ram(free=1)), num_ctx=4096, num_batch=512)[0] == 1
    # configured: taken as is, fitting or not
    assert plan(SMOLLM2, inv(ram(free=1)), num_ctx=4096, num_batch=512,
                configured_parallel=8)[0] == 8
