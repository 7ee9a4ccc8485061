"""Convert a Hugging Face Safetensors model to GGUF: the files in, one GGUF file out (issue 16).

The decisions are core/hf_convert.py's; this module reads the files, streams the tensors one at
a time (memory bounded by the largest tensor, not the model) through them, and writes with the
``gguf`` package's writer: header, metadata and tensor infos first, then each tensor's data.
The output goes to a temporary file next to ``out_path`` that is fsynced and renamed into place
only when complete, so nothing half-written is ever visible.

2-D weights are written as F16 (BF16 when the source is BF16: llama.cpp's ``--outtype auto``),
norms and biases as F32. The server runs it in a subprocess of its own::

    python -m pollama.adapters.hf_converter OUT.gguf NAME=PATH...

printing one JSON progress line per tensor and ``{"error": ...}`` on failure.
"""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import gguf
import numpy as np

from pollama.core import hf_convert as hf
from pollama.core import safetensors as stf
from pollama.core.errors import BadRequest, PollamaError
from pollama.core.ndjson import NEED_DATA, NDJSONReader

from .quantizer import commit_blob, error_tail
from .runner_process import with_parent_death
from .store import Store

Progress = Callable[[int, int], None]  # (tensors done, tensors in all)

_NUMPY = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


@dataclass
class _Source:
    file: str  # its name in the model directory
    path: str
    header: stf.Header


def names_for(arch: hf.Arch, layers: int) -> hf.NameLookup:
    """Hugging Face tensor names to GGUF ones for ``arch``: gguf's TensorNameMap, the table
    llama.cpp's converter uses."""
    table = gguf.get_tensor_name_map(
        next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch.name), layers)
    # (gguf's table names Phi-3's fused gate_up_proj ffn_up: llama.cpp's phi3 takes it so)

    def lookup(name: str) -> str | None:
        return table.get_name(name, try_suffixes=(".weight", ".bias"))

    return lookup


def _read(path: str, limit: int = 64 << 20) -> bytes:
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise BadRequest(f"{os.path.basename(path)}: larger than {limit >> 20} MiB")
    return data


def _headers(files: Mapping[str, str]) -> dict[str, _Source]:
    """Every tensor of the ``*.safetensors`` files, by name."""
    tensors: dict[str, _Source] = {}
    weights = sorted(n for n in files if n.endswith(".safetensors"))
    if not weights:
        raise BadRequest("no *.safetensors file among the model's files")
    for name in weights:
        path = files[name]
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            prefix = f.read(stf.PREFIX)
            n = stf.header_length(prefix, name)
            header = stf.parse_header(prefix + f.read(n), file_size=size, name=name)
        for t in header.tensors:
            if t.name in tensors:
                raise BadRequest(f"{name}: tensor {t.name!r} is also in {tensors[t.name].file}")
            tensors[t.name] = _Source(file=name, path=path, header=header)
    return tensors


def _load(source: _Source, info: stf.TensorInfo) -> np.ndarray[Any, Any]:
    """One tensor as float32, in its Hugging Face shape."""
    with open(source.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        start = source.header.data_start + info.begin
        raw = m[start:start + info.end - info.begin]
    if info.dtype == "BF16":
        bits = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
        array = bits.view(np.float32)
    elif info.dtype in _NUMPY:
        array = np.frombuffer(raw, dtype=_NUMPY[info.dtype]).astype(np.float32)
    else:
        raise BadRequest(f"{source.file}: tensor {info.name!r} has dtype {info.dtype}; "
                         f"F32, F16 and BF16 are converted")
    return array.reshape(info.shape)


def convert(files: Mapping[str, str], out_path: str, progress: Progress | None = None) -> None:
    """Convert the model whose files (name in the directory -> path) are ``files``."""
    if hf.CONFIG not in files:
        raise BadRequest(f"the model's files have no {hf.CONFIG}")
    config = hf.parse_config(_read(files[hf.CONFIG]))
    arch = hf.architecture(config)
    kvs = hf.metadata(arch, config)
    vocab = _vocab(files, config)
    sources = _headers(files)
    plans = hf.plan_tensors(arch, config, list(sources),
                            names_for(arch, config["num_hidden_layers"]),
                            {name: s.file for name, s in sources.items()})
    infos = {p.source: _info(sources[p.source], p.source) for p in plans}
    for p in plans:
        want = hf.expected_shape(arch, config, p.name)
        if want is not None and infos[p.source].shape != want:
            raise BadRequest(f"{sources[p.source].file}: tensor {p.source!r} has shape "
                             f"{list(infos[p.source].shape)}, the config says {list(want)}")
    bf16 = any(i.dtype == "BF16" for i in infos.values())
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads",
                                                                config["num_attention_heads"])
    tmp = f"{out_path}.partial-{os.getpid()}"
    writer = gguf.GGUFWriter(tmp, arch.name)
    try:
        _write_metadata(writer, kvs, vocab, bf16)
        factors = hf.rope_factors(config) if arch.permute_qk else None
        if factors is not None:  # Llama 3.1's scaling, as llama.cpp's converter writes it
            writer.add_tensor_info("rope_freqs.weight", (len(factors),), np.dtype(np.float32),
                                   4 * len(factors), raw_dtype=gguf.GGMLQuantizationType.F32)
        out_types = {}
        for p in plans:
            info = infos[p.source]
            kind = _GGML[hf.out_dtype(p.name, info.shape, bf16)]
            out_types[p.source] = kind
            shape = info.shape
            nbytes = int(np.prod(shape)) * (4 if kind is gguf.GGMLQuantizationType.F32 else 2)
            writer.add_tensor_info(p.name, shape, np.dtype(np.float32 if kind is
                                   gguf.GGMLQuantizationType.F32 else np.float16),
                                   nbytes, raw_dtype=kind)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        if factors is not None:
            writer.write_tensor_data(np.array(factors, dtype=np.float32))
        for done, p in enumerate(plans, 1):
            array = _load(sources[p.source], infos[p.source])
            if p.transform == "permute_q":
                array = hf.permute(array, heads)
            elif p.transform == "permute_k":
                array = hf.permute(array, kv_heads)
            elif p.transform == "plus_one":
                array = array + 1.0
            kind = out_types[p.source]
            if kind is gguf.GGMLQuantizationType.F32:
                data = np.ascontiguousarray(array, dtype=np.float32)
            elif kind is gguf.GGMLQuantizationType.BF16:
                data = _to_bf16(array)
            else:
                data = np.ascontiguousarray(array, dtype=np.float16)
            writer.write_tensor_data(data)
            del array, data
            if progress is not None:
                progress(done, len(plans))
        _finish(writer, tmp, out_path)
    except BaseException:
        _discard(writer, tmp)
        raise


def convert_lora(files: Mapping[str, str], base_kv: Mapping[str, Any], out_path: str,
                 progress: Progress | None = None) -> None:
    """Convert a PEFT LoRA (``adapter_config.json``, ``*.safetensors``) for the base model
    whose GGUF key/values are ``base_kv`` into a GGUF LoRA (F32 factors)."""
    if hf.ADAPTER_CONFIG not in files:
        raise BadRequest(f"the adapter's files have no {hf.ADAPTER_CONFIG}")
    adapter_config = hf.parse_config(_read(files[hf.ADAPTER_CONFIG]), hf.ADAPTER_CONFIG)
    arch_name = str(base_kv.get("general.architecture", ""))
    arch = hf.arch_of_gguf(arch_name)
    kvs = hf.lora_metadata(adapter_config, arch_name)

    def base_int(key: str) -> int:
        value = base_kv.get(f"{arch_name}.{key}")
        if not isinstance(value, int):
            raise BadRequest(f"the base model has no {arch_name}.{key}")
        return value

    heads = base_int("attention.head_count")
    kv_heads = base_kv.get(f"{arch_name}.attention.head_count_kv", heads)
    sources = _headers(files)
    plans = hf.plan_lora(arch, list(sources), names_for(arch, base_int("block_count")), heads,
                         kv_heads if isinstance(kv_heads, int) else heads)
    tmp = f"{out_path}.partial-{os.getpid()}"
    writer = gguf.GGUFWriter(tmp, arch_name)
    try:
        _write_kvs(writer, kvs)
        shapes = {}
        for p in plans:
            a, b = _info(sources[p.source_a], p.source_a), _info(sources[p.source_b], p.source_b)
            if len(a.shape) != 2 or len(b.shape) != 2 or a.shape[0] != b.shape[1]:
                raise BadRequest(f"{sources[p.source_a].file}: {p.source_a!r} {list(a.shape)} "
                                 f"and {p.source_b!r} {list(b.shape)} are not a rank-r pair")
            for suffix, info in ((".lora_a", a), (".lora_b", b)):
                shapes[p.name + suffix] = info.shape
                writer.add_tensor_info(p.name + suffix, info.shape, np.dtype(np.float32),
                                       int(np.prod(info.shape)) * 4,
                                       raw_dtype=gguf.GGMLQuantizationType.F32)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for done, p in enumerate(plans, 1):
            a = _load(sources[p.source_a], _info(sources[p.source_a], p.source_a))
            b = _load(sources[p.source_b], _info(sources[p.source_b], p.source_b))
            if p.permute_heads:
                b = hf.permute(b, p.permute_heads)
            writer.write_tensor_data(np.ascontiguousarray(a, dtype=np.float32))
            writer.write_tensor_data(np.ascontiguousarray(b, dtype=np.float32))
            if progress is not None:
                progress(done, len(plans))
        _finish(writer, tmp, out_path)
    except BaseException:
        _discard(writer, tmp)
        raise


def _finish(writer: gguf.GGUFWriter, tmp: str, out_path: str) -> None:
    writer.close()
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, out_path)


def _discard(writer: gguf.GGUFWriter, tmp: str) -> None:
    writer.close()
    try:
        os.remove(tmp)
    except FileNotFoundError:
        pass


def _vocab(files: Mapping[str, str], config: Mapping[str, Any]) -> hf.Vocab:
    """The vocabulary: ``tokenizer.json`` (byte-level BPE, WordPiece), or SentencePiece's
    ``tokenizer.model`` when there is no such ``tokenizer.json``."""
    tok_config_path = files.get(hf.TOKENIZER_CONFIG)
    tok_config = _read(tok_config_path) if tok_config_path else None
    tokenizer = _read(files[hf.TOKENIZER], 256 << 20) if hf.TOKENIZER in files else None
    if hf.SENTENCEPIECE in files and (tokenizer is None
                                      or hf.is_sentencepiece_json(tokenizer)):
        return hf.sentencepiece_vocab(_pieces(files[hf.SENTENCEPIECE]), tok_config, config)
    if tokenizer is None:
        raise BadRequest(f"the model's files have no {hf.TOKENIZER} or {hf.SENTENCEPIECE}")
    if hf.is_sentencepiece_json(tokenizer):
        raise BadRequest(f"{hf.TOKENIZER} is a SentencePiece vocabulary: add its "
                         f"{hf.SENTENCEPIECE}")
    return hf.vocab(tokenizer, tok_config, config)


def _pieces(path: str) -> list[hf.Piece]:
    """The pieces of a SentencePiece model file, with their scores and GGUF types."""
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(_read(path))
    except (RuntimeError, OSError) as exc:
        raise BadRequest(f"{hf.SENTENCEPIECE}: not a SentencePiece model ({exc})") from None
    pieces = []
    for i in range(sp.vocab_size()):
        if sp.is_unknown(i):
            kind = hf.UNKNOWN
        elif sp.is_control(i):
            kind = hf.CONTROL
        elif sp.is_unused(i):
            kind = hf.UNUSED
        elif sp.is_byte(i):
            kind = hf.BYTE
        else:
            kind = hf.NORMAL
        pieces.append(hf.Piece(text=sp.id_to_piece(i), score=sp.get_score(i), kind=kind))
    return pieces


def _info(source: _Source, name: str) -> stf.TensorInfo:
    info = source.header.tensor(name)
    assert info is not None
    return info


_GGML = {"F32": gguf.GGMLQuantizationType.F32, "F16": gguf.GGMLQuantizationType.F16,
         "BF16": gguf.GGMLQuantizationType.BF16}


def _to_bf16(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """float32 to bfloat16 bits (round to nearest even), as uint16."""
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
    rounded = bits + 0x7FFF + ((bits >> 16) & 1)
    return (rounded >> 16).astype(np.uint16)


def _write_metadata(writer: gguf.GGUFWriter, kvs: list[hf.KV], vocab: hf.Vocab,
                    bf16: bool) -> None:
    _write_kvs(writer, kvs)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_BF16 if bf16 else
                         gguf.LlamaFileType.MOSTLY_F16)
    _write_vocab(writer, vocab)


def _write_kvs(writer: gguf.GGUFWriter, kvs: list[hf.KV]) -> None:
    for kv in kvs:
        if kv.key == "general.architecture":
            continue  # the writer adds it
        if kv.kind == "u32":
            writer.add_uint32(kv.key, kv.value)
        elif kv.kind == "f32":
            writer.add_float32(kv.key, kv.value)
        elif kv.kind == "bool":
            writer.add_bool(kv.key, kv.value)
        else:
            writer.add_string(kv.key, kv.value)


def _write_vocab(writer: gguf.GGUFWriter, vocab: hf.Vocab) -> None:
    writer.add_tokenizer_model(vocab.model)
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(list(vocab.tokens))
    writer.add_token_types(list(vocab.types))
    if vocab.scores:
        writer.add_token_scores(list(vocab.scores))
    if vocab.merges:
        writer.add_token_merges(list(vocab.merges))
    if vocab.model == "bert" and vocab.eos is not None:
        writer.add_sep_token_id(vocab.eos)
    for setter, value in ((writer.add_bos_token_id, vocab.bos),
                          (writer.add_eos_token_id, vocab.eos),
                          (writer.add_unk_token_id, vocab.unk),
                          (writer.add_pad_token_id, vocab.pad)):
        if value is not None:
            setter(value)
    if vocab.add_bos is not None:
        writer.add_add_bos_token(vocab.add_bos)
    if vocab.add_eos is not None:
        writer.add_add_eos_token(vocab.add_eos)
    if vocab.chat_template is not None:
        writer.add_chat_template(vocab.chat_template)


def main(argv: list[str]) -> int:
    """``OUT [--base BASE.gguf] NAME=PATH...``: a model, or with ``--base`` a LoRA for it."""
    out_path, pairs = argv[0], argv[1:]
    base = None
    if pairs[:1] == ["--base"]:
        base, pairs = pairs[1], pairs[2:]
    files = dict(pair.split("=", 1) for pair in pairs)

    def progress(done: int, total: int) -> None:
        print(json.dumps({"status": "converting model", "completed": done, "total": total}),
              flush=True)

    try:
        if base is None:
            convert(files, out_path, progress)
        else:
            from .gguf_file import read_header
            convert_lora(files, read_header(base, ()).kv, out_path, progress)
    except PollamaError as exc:
        print(json.dumps({"error": exc.message, "status": exc.status_hint}), flush=True)
        return 1
    except (OSError, ValueError, MemoryError) as exc:
        print(json.dumps({"error": f"converting model: {exc}", "status": 500}), flush=True)
        return 1
    return 0


class Conversion:
    """One conversion for /api/create, in a subprocess of its own (killed with the server,
    or when the client leaves). After ``run()``, ``hex_digest`` is the GGUF blob's."""

    def __init__(self, store: Store, files: Mapping[str, str],
                 base_hex: str | None = None) -> None:
        self.store = store
        self.files = files  # name in the directory -> hex digest of its blob
        self.base_hex = base_hex  # a LoRA's base model
        self.hex_digest: str | None = None

    async def run(self) -> AsyncIterator[dict[str, Any]]:
        store = self.store
        os.makedirs(store.blobs_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=store.blobs_dir, prefix=".tmp-convert-")
        os.close(fd)
        errlog = tempfile.TemporaryFile()
        base = ["--base", store.blob_path(self.base_hex)] if self.base_hex else []
        argv = [sys.executable, "-m", "pollama.adapters.hf_converter", tmp, *base,
                *[f"{name}={store.blob_path(h)}" for name, h in self.files.items()]]
        proc = None
        try:
            proc = await anyio.open_process(with_parent_death(argv), stdin=subprocess.DEVNULL,
                                            stdout=subprocess.PIPE, stderr=errlog)
            yield {"status": "converting model"}
            failure: dict[str, Any] | None = None
            reader = NDJSONReader()
            assert proc.stdout is not None
            async for data in proc.stdout:
                reader.receive_data(data)
                while (obj := reader.next_event()) is not NEED_DATA and obj is not None:
                    if isinstance(obj, dict) and "error" in obj:
                        failure = obj
                    elif isinstance(obj, dict):
                        yield {"status": "converting model", "total": obj.get("total"),
                               "completed": obj.get("completed")}
            code = await proc.wait()
            if failure is not None:
                status = failure.get("status")
                raise PollamaError(str(failure["error"]),
                                   status_hint=status if isinstance(status, int) else 500)
            if code != 0:
                raise PollamaError(f"converting model: exit status {code}{error_tail(errlog)}")
            self.hex_digest = await anyio.to_thread.run_sync(commit_blob, store, tmp,
                                                             "conversion")
        finally:
            with anyio.CancelScope(shield=True):
                if proc is not None and proc.returncode is None:
                    proc.kill()
                    await proc.wait()
                errlog.close()
                for path in (tmp, *(p for p in _partials(tmp))):
                    try:
                        os.unlink(path)
                    except FileNotFoundError:
                        pass


def _partials(tmp: str) -> list[str]:
    folder, base = os.path.split(tmp)
    return [os.path.join(folder, n) for n in os.listdir(folder)
            if n.startswith(base + ".partial-")]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
