"""How much memory a model needs, and how many of its layers go to the GPU(s).

Pure functions over data: the adapter (``adapters/devices.py``) runs ``nvidia-smi``,
``rocm-smi``, ``sysctl`` and reads ``/proc/meminfo``, and hands their text to the parsers here;
the scheduler asks :func:`estimate` and :func:`fit` before it spawns a runner and reports the
result in ``/api/ps`` (``size``, ``size_vram``, Ollama's server/routes.go ListHandler, PsHandler,
ShowHandler) and ``ollama ps`` (:func:`processor_label`).

The model follows Ollama's ``llm/memory.go`` (``EstimateGPULayers``) and ``fs/ggml``
``GraphSize``, simplified to what a GGUF header tells us without reading tensors:

* weights are split into ``block_count`` equal repeating layers plus one output layer (the
  ``output``/tied ``token_embd`` matrix, ``n_vocab × embedding_length`` parameters when the
  vocabulary size is known); the KV cache belongs to the repeating layers in equal shares, so a
  layer placed on a GPU takes its weights *and* its slice of the cache with it;
* the compute graph (scratch buffers) is Ollama's llama-family ``GraphSize`` estimate, one for
  full offload and one (larger) for partial offload;
* each GPU keeps back Ollama's per-library minimum (457 MiB on CUDA/ROCm, for the driver
  context) plus ``OLLAMA_GPU_OVERHEAD``, the graph, and one block's worth of buffer; whole layers
  are placed while they fit under what is left. The reserve and graph count towards
  ``size_vram`` as they do in Ollama's ``VRAMSize``; the one-layer buffer is headroom only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from .gguf_details import ModelFacts

__all__ = [
    "AUTO_PARALLEL", "DEFAULT_VOCAB", "GPU_RESERVE", "KINDS", "KV_CACHE_BYTES", "Device",
    "Estimate", "GiB", "Inventory", "MiB", "ModelShape", "Placement", "cpu_device",
    "default_num_ctx", "estimate", "fit", "graph_sizes", "kv_bytes_per_element", "kv_cache_bytes",
    "kv_streams", "metal_working_set", "parallel_choices", "parse_meminfo", "parse_nvidia_smi",
    "parse_rocm_smi", "parse_sysctl_memsize", "plan", "processor_label", "shape_from_facts"
]

MiB = 1024 * 1024
GiB = 1024 * MiB

KINDS = ("cpu", "cuda", "rocm", "metal")

# Ollama discover/gpu.go: cudaMinimumMemory = rocmMinimumMemory = 457 MiB, kept free on every
# GPU for the driver/runtime context. Metal reports its working-set limit instead (0 here).
GPU_RESERVE: dict[str, int] = {"cuda": 457 * MiB, "rocm": 457 * MiB, "metal": 0}

# Used for the graph estimate when the vocabulary size is unknown: llama/llama2's 32000 tokens.
DEFAULT_VOCAB = 32000

# Ollama kvCacheBytesPerElement (OLLAMA_KV_CACHE_TYPE): f16 default, q8_0, q4_0.
KV_CACHE_BYTES: dict[str, float] = {"f16": 2.0, "q8_0": 1.0, "q4_0": 0.5}


def kv_bytes_per_element(cache_type: str) -> float:
    """Bytes per K/V element for an ``OLLAMA_KV_CACHE_TYPE``; unknown or empty means f16."""
    return KV_CACHE_BYTES.get(cache_type.strip().lower(), 2.0)


# ---------------------------------------------------------------------------------------------
# Devices


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    """One memory pool: system RAM (``kind="cpu"``) or one GPU. Sizes in bytes."""

    id: str  # "cpu", "cuda:0", "rocm:1", "metal"
    kind: str
    name: str
    total: int
    free: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown device kind {self.kind!r}")
        if not self.id:
            raise ValueError("device id must not be empty")
        if self.total < 0 or self.free < 0 or self.free > self.total:
            raise ValueError(f"bad device memory total={self.total} free={self.free}")

    @property
    def is_gpu(self) -> bool:
        return self.kind != "cpu"


@dataclass(frozen=True, slots=True, kw_only=True)
class Inventory:
    """Every memory pool on the machine, as discovered at one moment."""

    devices: tuple[Device, ...] = ()

    def __post_init__(self) -> None:
        ids = [d.id for d in self.devices]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate device ids in {ids}")

    def cpu(self) -> Device | None:
        """System RAM, or None when it could not be determined."""
        return next((d for d in self.devices if d.kind == "cpu"), None)

    def gpus(self) -> tuple[Device, ...]:
        return tuple(d for d in self.devices if d.is_gpu)

    def gpu_total(self) -> int:
        return sum(d.total for d in self.gpus())


def default_num_ctx(inventory: Inventory) -> int:
    """Ollama's default ``num_ctx`` by total VRAM (Ollama's server/sched.go, v0.15.5+) when
    ``OLLAMA_CONTEXT_LENGTH`` is unset: ≥47 GiB ⇒ 262144, ≥23 GiB ⇒ 32768, else 4096."""
    vram = inventory.gpu_total()
    if vram >= 47 * GiB:
        return 262144
    if vram >= 23 * GiB:
        return 32768
    return 4096


# ---------------------------------------------------------------------------------------------
# Model shape and estimate


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelShape:
    """The few GGUF numbers that decide memory use. ``key_length``/``value_length`` are the
    GGUF ``attention.key_length``/``value_length`` (per-head K/V width); when absent they default
    to ``embedding_length // head_count``. ``output_bytes`` is the size of the non-repeating
    output layer; when absent it is taken as one layer's share of the weights."""

    weights_bytes: int
    block_count: int
    embedding_length: int
    head_count: int
    head_count_kv: int
    context_length_train: int | None
    n_vocab: int | None = None
    key_length: int | None = None
    value_length: int | None = None
    output_bytes: int | None = None

    def __post_init__(self) -> None:
        for name in ("weights_bytes", "block_count", "embedding_length", "head_count",
                     "head_count_kv"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("context_length_train", "n_vocab", "key_length", "value_length",
                     "output_bytes"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ValueError(f"{name} must not be negative")
        if self.output_bytes is not None and self.output_bytes > self.weights_bytes:
            raise ValueError("output_bytes exceeds weights_bytes")

    @property
    def head_dim(self) -> int:
        return self.embedding_length // self.head_count if self.head_count > 0 else 0

    @property
    def head_dim_k(self) -> int:
        return self.key_length if self.key_length is not None else self.head_dim

    @property
    def head_dim_v(self) -> int:
        return self.value_length if self.value_length is not None else self.head_dim

    @property
    def layer_count(self) -> int:
        """Layers llama.cpp can offload: the repeating blocks plus the output layer."""
        return self.block_count + 1

    @property
    def output_layer_bytes(self) -> int:
        if self.block_count == 0:
            return self.weights_bytes
        if self.output_bytes is not None:
            return self.output_bytes
        return self.weights_bytes // (self.block_count + 1)


def shape_from_facts(facts: ModelFacts, weights_bytes: int, *, n_vocab: int | None = None,
                     key_length: int | None = None,
                     value_length: int | None = None) -> ModelShape:
    """A :class:`ModelShape` from GGUF facts and the model blob's size.

    Missing counts become 0 (no KV cache, the whole file as one layer); ``head_count_kv``
    defaults to ``head_count`` as in GGUF. With ``n_vocab`` known, the output layer is
    ``n_vocab × embedding_length`` parameters at the file's average bytes per parameter.
    """
    heads = facts.head_count or 0
    emb = facts.embedding_length or 0
    output: int | None = None
    if n_vocab and emb and facts.parameter_count > 0:
        output = min(weights_bytes, weights_bytes * n_vocab * emb // facts.parameter_count)
    return ModelShape(
        weights_bytes=weights_bytes,
        block_count=facts.block_count or 0,
        embedding_length=emb,
        head_count=heads,
        head_count_kv=facts.head_count_kv if facts.head_count_kv is not None else heads,
        context_length_train=facts.context_length,
        n_vocab=n_vocab,
        key_length=key_length,
        value_length=value_length,
        output_bytes=output,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Estimate:
    """Bytes a runner needs, independent of where it runs. ``total`` is the CPU-only size."""

    weights: int
    kv_cache: int
    compute_buffer: int  # graph for CPU-only / full GPU offload
    compute_buffer_partial: int  # graph when layers are split between GPU and CPU
    overhead: int  # projectors (vision), loaded on the first GPU as Ollama does
    total: int = field(default=-1)

    def __post_init__(self) -> None:
        parts = (self.weights, self.kv_cache, self.compute_buffer, self.compute_buffer_partial,
                 self.overhead)
        if min(parts) < 0:
            raise ValueError("estimate parts must not be negative")
        want = self.weights + self.kv_cache + self.compute_buffer + self.overhead
        if self.total == -1:
            object.__setattr__(self, "total", want)
        elif self.total != want:
            raise ValueError(
                f"total {self.total} != weights+kv_cache+compute_buffer+overhead {want}")


def kv_cache_bytes(shape: ModelShape, *, num_ctx: int, num_parallel: int = 1,
                   kv_bytes_per_elem: float = 2.0) -> int:
    """K and V for every layer and every slot: block_count × (num_ctx × num_parallel) ×
    head_count_kv × (head_dim_k + head_dim_v) × bytes/element — Ollama's formula
    (``kv = ctx × blocks × (headK + headV) × headsKV × bytesPerElement``); llama.cpp runs with
    ``-c num_ctx*np`` so the cache is shared by all parallel slots."""
    elems = (shape.block_count * num_ctx * num_parallel * shape.head_count_kv
             * (shape.head_dim_k + shape.head_dim_v))
    return int(elems * kv_bytes_per_elem)


def graph_sizes(shape: ModelShape, *, context: int, batch: int) -> tuple[int, int]:
    """(full offload, partial offload) compute-graph bytes: Ollama's ``GraphSize`` for the llama
    family (fs/ggml/ggml.go), used for every architecture here. Go's unsigned integer maths::

        full    = max(4·b·(1 + 4·E + C·(1 + H)), 4·b·(E + V))
        partial = 4·b·E + max(4·b·(1 + E + max(C, E)) + E²·9/16 + 4·C·(b·H + Dk·Hkv),
                              4·b·(E + V) + E·V·105/128)

    C context (num_ctx × parallel), b batch (≤ C), E embedding, H heads, Hkv KV heads, Dk key
    width, V vocabulary (32000 when unknown). The C·H term is the attention score matrix
    without flash attention.
    """
    e, h, hkv, dk = shape.embedding_length, shape.head_count, shape.head_count_kv, shape.head_dim_k
    v = shape.n_vocab if shape.n_vocab is not None else DEFAULT_VOCAB
    c, b = context, batch
    full = max(4 * b * (1 + 4 * e + c * (1 + h)), 4 * b * (e + v))
    partial = 4 * b * e + max(
        4 * b * (1 + e + max(c, e)) + e * e * 9 // 16 + 4 * c * (b * h + dk * hkv),
        4 * b * (e + v) + e * v * 105 // 128,
    )
    return full, partial


AUTO_PARALLEL = 4  # slots per runner when POLLAMA_NUM_PARALLEL is unset and memory allows


def parallel_choices(configured: int, *, embedding_only: bool = False) -> tuple[int, ...]:
    """Slot counts to try for a new runner, best first: the one configured
    (``POLLAMA_NUM_PARALLEL`` > 0), else ``AUTO_PARALLEL`` then 1 (``plan`` takes the first
    that fits, as Ollama's automatic parallelism did). An embedding-only model gets one slot,
    as in Ollama: its batches pack many inputs into one decode instead."""
    if configured > 0:
        return (configured,)
    if embedding_only:
        return (1,)
    return (AUTO_PARALLEL, 1)


def kv_streams(num_parallel: int) -> int:
    """KV streams (sequences of ``num_ctx`` cells) a runner with ``num_parallel`` slots
    holds: with several slots, one more, where embeddings run between decode steps without
    touching the slots' caches; one slot keeps a single unified cache."""
    return num_parallel + 1 if num_parallel > 1 else 1


def plan(shape: ModelShape, inventory: Inventory, *, num_ctx: int, num_batch: int,
         num_gpu: int = -1, projector_bytes: int = 0, configured_parallel: int = 0,
         embedding_only: bool = False, budget: int = 0) -> tuple[int, Placement]:
    """The slots and placement of a new runner: the first of ``parallel_choices`` whose
    estimate (the KV cache of ``num_ctx`` × ``kv_streams``) fits free memory and ``budget`` (bytes
    for all models, 0 = unlimited); the last choice when none does."""
    choices = parallel_choices(configured_parallel, embedding_only=embedding_only)
    for parallel in choices:
        est = estimate(shape, num_ctx=num_ctx, num_parallel=kv_streams(parallel),
                       num_batch=num_batch, projector_bytes=projector_bytes)
        placement = fit(est, shape, inventory, num_gpu=num_gpu)
        if placement.fits and (budget == 0 or placement.size <= budget):
            break
    return parallel, placement


def estimate(shape: ModelShape, *, num_ctx: int, num_parallel: int = 1,
             kv_bytes_per_elem: float = 2.0, num_batch: int = 512,
             projector_bytes: int = 0) -> Estimate:
    """Memory for one runner of ``shape`` with ``num_parallel`` slots of ``num_ctx`` tokens.

    ``num_ctx`` is the per-request context (already clamped to the trained length by the
    caller); like Ollama the runner gets ``num_ctx × num_parallel`` cells and a batch of
    ``min(that, num_batch)``.
    """
    if num_ctx < 1 or num_parallel < 1 or num_batch < 1:
        raise ValueError("num_ctx, num_parallel and num_batch must be positive")
    if kv_bytes_per_elem <= 0 or projector_bytes < 0:
        raise ValueError("bad kv_bytes_per_elem or projector_bytes")
    context = num_ctx * num_parallel
    full, partial = graph_sizes(shape, context=context, batch=min(context, num_batch))
    return Estimate(
        weights=shape.weights_bytes,
        kv_cache=kv_cache_bytes(shape, num_ctx=num_ctx, num_parallel=num_parallel,
                                kv_bytes_per_elem=kv_bytes_per_elem),
        compute_buffer=full,
        compute_buffer_partial=partial,
        overhead=projector_bytes,
    )


# ---------------------------------------------------------------------------------------------
# Placement


@dataclass(frozen=True, slots=True, kw_only=True)
class Placement:
    """Where a runner's memory goes. ``devices``/``device_layers``/``device_sizes`` are
    parallel, one entry per GPU used (``device_layers`` is llama.cpp's tensor split).
    ``gpu_layers`` is what to pass as ``n_gpu_layers``. ``vram_fits`` is False only when an
    explicit ``num_gpu`` forces more onto a GPU than it has free; ``fits`` also requires the CPU
    part to fit in free system RAM (unknown RAM counts as fitting)."""

    gpu_layers: int
    layer_count: int
    size: int
    size_vram: int
    size_cpu: int
    devices: tuple[str, ...] = ()
    device_layers: tuple[int, ...] = ()
    device_sizes: tuple[int, ...] = ()
    vram_fits: bool = True
    fits: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.gpu_layers <= self.layer_count:
            raise ValueError(f"gpu_layers {self.gpu_layers} outside 0..{self.layer_count}")
        if min(self.size, self.size_vram, self.size_cpu) < 0:
            raise ValueError("sizes must not be negative")
        if self.size != self.size_vram + self.size_cpu:
            raise ValueError("size must equal size_vram + size_cpu")
        if not len(self.devices) == len(self.device_layers) == len(self.device_sizes):
            raise ValueError("devices, device_layers and device_sizes differ in length")
        if sum(self.device_layers) != self.gpu_layers or sum(self.device_sizes) != self.size_vram:
            raise ValueError("per-device split does not add up")

    @property
    def full_offload(self) -> bool:
        return self.gpu_layers == self.layer_count

    def fits_in(self, free_ram: int) -> bool:
        """Whether this placement fits given ``free_ram`` bytes of system memory."""
        return self.vram_fits and self.size_cpu <= free_ram

    @property
    def processor(self) -> str:
        return processor_label(self.size, self.size_vram)


def _layer_sizes(estimate: Estimate, shape: ModelShape) -> list[int]:
    """Bytes of each offloadable layer in llama.cpp order: blocks (weights + KV share), then
    output. Remainders go to the first blocks so the sizes add up exactly."""
    n = shape.block_count
    out = shape.output_layer_bytes
    if n == 0:
        return [estimate.weights]
    w, wr = divmod(estimate.weights - out, n)
    k, kr = divmod(estimate.kv_cache, n)
    return [w + (i < wr) + k + (i < kr) for i in range(n)] + [out]


def _cpu_only(estimate: Estimate, shape: ModelShape, ram: Device | None) -> Placement:
    size = estimate.total
    return Placement(gpu_layers=0, layer_count=shape.layer_count, size=size, size_vram=0,
                     size_cpu=size, fits=ram is None or size <= ram.free)


@dataclass(slots=True)
class _Plan:
    devs: list[Device]
    counts: list[int]
    used: list[int]  # layer bytes per device
    placed: int = 0


def _plan(devs: list[Device], layers: list[int], want: int, *, graph: int, buffer: int,
          overhead: int, gpu_overhead: int, force: bool) -> _Plan:
    """Put up to ``want`` layers, in order, on ``devs``: each onto the device with the most
    room left (which fills every device to the most whole layers), stopping at the first layer
    that fits nowhere. ``buffer`` is one block's size (Ollama's ``layerSize`` of ``blk.0`` plus
    its KV share). Devices that cannot hold the graph, the buffer and one more block are
    dropped, as Ollama does; the first kept device also carries the projectors. With ``force``
    the layers are placed whatever the room (an explicit ``num_gpu``)."""
    kept: list[Device] = []
    caps: list[int] = []
    for d in devs:
        extra = overhead if not kept else 0
        cap = d.free - gpu_overhead - GPU_RESERVE[d.kind] - graph - buffer - extra
        if force or cap >= layers[0]:
            kept.append(d)
            caps.append(cap)
    plan = _Plan(kept, [0] * len(kept), [0] * len(kept))
    for size in layers[:want]:
        best = -1
        if plan.placed == 0:
            # The first layer goes to the first kept device (it has room for one: see above),
            # which carries the projectors; Ollama's round-robin also starts there.
            best = 0 if kept else -1
        else:
            for i, cap in enumerate(caps):
                room = cap - plan.used[i]
                if (force or room >= size) and (best < 0 or room > caps[best] - plan.used[best]):
                    best = i
        if best < 0:
            break
        plan.counts[best] += 1
        plan.used[best] += size
        plan.placed += 1
    return plan


def fit(estimate: Estimate, shape: ModelShape, inventory: Inventory, *, num_gpu: int = -1,
        gpu_overhead: int = 0) -> Placement:
    """Decide how many layers go to the GPU(s), as Ollama's scheduler and ``EstimateGPULayers``.

    Order of attempts (Ollama ``pickBestFullFitByLibrary`` then partial offload): the whole
    model on the single GPU with the most free memory; the whole model spread over all GPUs of
    one kind; otherwise the most whole layers the GPUs of one kind can hold, the rest on CPU.
    No GPU, ``num_gpu == 0`` or no layer fitting ⇒ everything on CPU. An explicit
    ``num_gpu > 0`` is honoured (capped at ``block_count + 1``) even beyond free VRAM, since
    that is what Ollama passes to llama.cpp; ``vram_fits`` then says whether it will fit.

    VRAM of a GPU holding layers = reserve (457 MiB CUDA/ROCm) + graph (full when every layer is
    on one GPU, else partial; Metal always full) + its layers + projectors on the first GPU.
    Auto placement keeps ``free − gpu_overhead`` ≥ that + the larger graph + one block as
    buffer. CPU part: CPU-only ⇒ ``estimate.total``; otherwise the layers left on the CPU (Ollama
    does not count a CPU graph for partial offload).
    """
    if gpu_overhead < 0:
        raise ValueError("gpu_overhead must not be negative")
    ram = inventory.cpu()
    total_layers = shape.layer_count
    gpus = sorted(inventory.gpus(), key=lambda d: (-d.free, d.id))
    if not gpus or num_gpu == 0:
        return _cpu_only(estimate, shape, ram)
    layers = _layer_sizes(estimate, shape)
    want = total_layers if num_gpu < 0 else min(num_gpu, total_layers)
    force = num_gpu > 0
    by_kind: dict[str, list[Device]] = {}
    for d in gpus:
        by_kind.setdefault(d.kind, []).append(d)
    groups = sorted(by_kind.values(), key=lambda g: (-sum(d.free for d in g), g[0].id))

    def graph_for(devs: list[Device], placed: int) -> int:
        if devs[0].kind == "metal" or (placed == total_layers and len(devs) == 1):
            return estimate.compute_buffer
        return estimate.compute_buffer_partial

    def attempt(devs: list[Device], force_: bool) -> _Plan:
        # Room is checked against the larger graph, as Ollama does (Metal has only one).
        graph = estimate.compute_buffer
        if devs[0].kind != "metal":
            graph = max(graph, estimate.compute_buffer_partial)
        return _plan(devs, layers, want, graph=graph, buffer=layers[0],
                     overhead=estimate.overhead, gpu_overhead=gpu_overhead, force=force_)

    chosen: _Plan | None = None
    candidates = [[d] for d in gpus] + [g for g in groups if len(g) > 1]
    for devs in candidates:
        p = attempt(devs, False)
        if p.placed == want:
            chosen = p
            break
    if chosen is None:
        if force:
            chosen = attempt(groups[0], True)
        else:
            plans = [attempt(g, False) for g in groups]
            chosen = max(plans, key=lambda p: p.placed)  # first group wins ties
    if chosen.placed == 0:
        return _cpu_only(estimate, shape, ram)

    graph = graph_for(chosen.devs, chosen.placed)
    ids: list[str] = []
    counts: list[int] = []
    sizes: list[int] = []
    vram_fits = True
    first = True
    for d, n, used in zip(chosen.devs, chosen.counts, chosen.used):
        if n == 0:
            continue
        size = GPU_RESERVE[d.kind] + graph + used + (estimate.overhead if first else 0)
        first = False
        ids.append(d.id)
        counts.append(n)
        sizes.append(size)
        vram_fits = vram_fits and size + gpu_overhead <= d.free
    size_vram = sum(sizes)
    size_cpu = sum(layers[chosen.placed:])
    return Placement(
        gpu_layers=chosen.placed, layer_count=total_layers, size=size_vram + size_cpu,
        size_vram=size_vram, size_cpu=size_cpu, devices=tuple(ids), device_layers=tuple(counts),
        device_sizes=tuple(sizes), vram_fits=vram_fits,
        fits=vram_fits and (ram is None or size_cpu <= ram.free),
    )


def _go_round(x: float) -> int:
    """Go's math.Round: half away from zero (Python's round() is half-to-even)."""
    t = math.trunc(x)
    if abs(x - t) >= 0.5:
        t += 1 if x > 0 else -1
    return int(t)


def processor_label(size: int, size_vram: int) -> str:
    """The PROCESSOR column of ``ollama ps`` (cmd/cmd.go ListRunningHandler), case for case:
    no VRAM ⇒ ``100% CPU``; all of it ⇒ ``100% GPU``; VRAM above size or size 0 ⇒
    ``Unknown``; else ``N%/M% CPU/GPU`` with N = round(cpu share × 100) and M = 100 − N."""
    if size_vram == 0:
        return "100% CPU"
    if size_vram == size:
        return "100% GPU"
    if size_vram > size or size == 0:
        return "Unknown"
    cpu = _go_round(float(size - size_vram) / float(size) * 100)
    return f"{cpu}%/{100 - cpu}% CPU/GPU"


# ---------------------------------------------------------------------------------------------
# Parsers for the discovery tools' output (never raise: unreadable input means "no device")


def _int(text: Any) -> int | None:
    """A non-negative integer from an int or a decimal string, else None."""
    if isinstance(text, bool):
        return None
    if isinstance(text, int):
        return text if text >= 0 else None
    if isinstance(text, str):
        s = text.strip()
        if s.isascii() and s.isdigit():
            return int(s)
    return None


def parse_meminfo(text: str, *, name: str = "CPU") -> Device | None:
    """System RAM from ``/proc/meminfo``: ``MemTotal`` and ``MemAvailable`` (kB). Kernels
    before 3.14 lack MemAvailable: then MemFree + Buffers + Cached. None if unreadable."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        parts = rest.split()
        if not parts:
            continue
        n = _int(parts[0])
        if n is None:
            continue
        unit = parts[1].lower() if len(parts) > 1 else ""
        values[key.strip()] = n * 1024 if unit == "kb" else n
    total = values.get("MemTotal")
    if not total:
        return None
    free = values.get("MemAvailable")
    if free is None:
        free = sum(values.get(k, 0) for k in ("MemFree", "Buffers", "Cached"))
    return Device(id="cpu", kind="cpu", name=name, total=total, free=min(free, total))


def cpu_device(total: int, free: int | None = None, *, name: str = "CPU") -> Device | None:
    """System RAM from raw numbers (``os.sysconf`` fallback); unknown free counts as total."""
    if total <= 0:
        return None
    f = total if free is None else max(0, min(free, total))
    return Device(id="cpu", kind="cpu", name=name, total=total, free=f)


def parse_nvidia_smi(text: str) -> tuple[Device, ...]:
    """GPUs from ``nvidia-smi --query-gpu=index,name,memory.total,memory.free
    --format=csv,noheader,nounits`` (MiB). Lines that do not parse (``[N/A]``, error text) are
    skipped. A name containing commas is rejoined."""
    out: list[Device] = []
    seen: set[str] = set()
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4:
            continue
        index, total, free = _int(parts[0]), _int(parts[-2]), _int(parts[-1])
        if index is None or total is None or free is None:
            continue
        dev_id = f"cuda:{index}"
        if dev_id in seen:
            continue
        seen.add(dev_id)
        name = ", ".join(parts[1:-2]) or "NVIDIA GPU"
        out.append(Device(id=dev_id, kind="cuda", name=name, total=total * MiB,
                          free=min(free, total) * MiB))
    return tuple(out)


def parse_rocm_smi(text: str) -> tuple[Device, ...]:
    """GPUs from ``rocm-smi --showmeminfo vram [--showproductname] --json``: an object of
    ``"cardN": {"VRAM Total Memory (B)": "...", "VRAM Total Used Memory (B)": "..."}``.
    Warnings printed before the JSON are skipped; anything malformed yields no device."""
    start = text.find("{")
    if start < 0:
        return ()
    try:
        data, _ = json.JSONDecoder().raw_decode(text, start)
    except (ValueError, RecursionError):
        return ()
    if not isinstance(data, dict):
        return ()
    cards: list[tuple[int, Device]] = []
    for key, card in data.items():
        if not (isinstance(key, str) and key.startswith("card") and isinstance(card, dict)):
            continue
        index = _int(key[4:])
        total = _int(card.get("VRAM Total Memory (B)"))
        used = _int(card.get("VRAM Total Used Memory (B)"))
        if index is None or total is None or used is None:
            continue
        name = next((v.strip() for k in ("Card series", "Card model", "Device Name")
                     if isinstance(v := card.get(k), str) and v.strip()), "AMD GPU")
        cards.append((index, Device(id=f"rocm:{index}", kind="rocm", name=name, total=total,
                                    free=max(0, total - used))))
    cards.sort(key=lambda c: c[0])
    return tuple(d for _, d in cards)


def metal_working_set(memsize: int) -> int:
    """Approximation of Metal's ``recommendedMaxWorkingSetSize``, which Ollama reports as the
    Apple GPU's memory: about two thirds of unified memory, three quarters above 36 GiB."""
    return memsize * 3 // 4 if memsize > 36 * GiB else memsize * 2 // 3


def parse_sysctl_memsize(text: str) -> Device | None:
    """The Apple-silicon GPU from ``sysctl hw.memsize`` (``hw.memsize: N``) or ``sysctl -n``
    output: unified memory reported as one ``metal`` device of the working-set size."""
    parts = text.replace(":", " ").split()
    memsize = _int(parts[-1]) if parts else None
    if not memsize:
        return None
    ws = metal_working_set(memsize)
    return Device(id="metal", kind="metal", name="Apple GPU", total=ws, free=ws)
