"""A tiny but valid vision projector ("mmproj") GGUF with random weights, for tests that need
llama.cpp's multimodal (mtmd) loader to accept a projector and turn an image into embeddings
a text model can read.

The projector is the simplest one mtmd knows: LLaVA-1.5's ``"mlp"`` type, a CLIP ViT followed
by ``mm.0`` (linear), GELU, ``mm.2`` (linear). Its output width is the text model's ``n_embd``,
which mtmd checks against the model it is paired with (576 for SmolLM2-135M).

Shape facts the loader (tools/mtmd/clip.cpp in llama.cpp) imposes or implies:

* llava takes the features of the *second-to-last* block, so ``n_layer`` blocks are stored and
  ``n_layer - 1`` run; the default of 2 runs one real attention + FFN block.
* Old llava conversions swapped ffn_up/ffn_down; the loader detects that by
  ``ffn_down.ne[0] == n_embd``, so ``n_ff`` must differ from ``n_embd``.
* There is no class embedding, so an image is ``(image_size // patch_size) ** 2`` positions in
  the text model (16 with the defaults). The fixed-size preprocessor pads (gray) and resizes
  every image to ``image_size`` square first.
* Integer hparams must be stored as u32, eps as f32 and mean/std as f32 arrays: the C loader
  asserts the GGUF types.

Weights are seeded, so the same arguments always produce the same bytes.

    python -m tests.tinymmproj out.gguf [n_embd_text]
"""

from __future__ import annotations

import struct
import sys
import zlib
from collections.abc import Callable

import numpy as np

from tests import tinygguf

PROJECTOR_TYPE = "mlp"


def n_image_positions(*, image_size: int = 32, patch_size: int = 8) -> int:
    """Positions one image takes in the text model with this projector."""
    return (image_size // patch_size) ** 2


def write_mmproj(path: str, n_embd_text: int = 576, *, image_size: int = 32, patch_size: int = 8,
                 n_embd: int = 64, n_head: int = 4, n_ff: int = 128, n_layer: int = 2,
                 n_mm_hidden: int = 128, seed: int = 0, name: str = "tiny-mmproj") -> str:
    """Write the projector to ``path`` (atomically) and return ``path``."""
    import gguf

    if image_size % patch_size:
        raise ValueError("image_size must be a multiple of patch_size")
    if n_embd % n_head:
        raise ValueError("n_embd must be a multiple of n_head")
    if n_ff == n_embd:
        raise ValueError("n_ff must differ from n_embd (the loader would swap ffn_up/ffn_down)")
    if n_layer < 1:
        raise ValueError("n_layer must be at least 1")
    n_pos = n_image_positions(image_size=image_size, patch_size=patch_size)
    rng = np.random.default_rng(seed)

    def matrix(*shape: int, scale: float = 0.05) -> np.ndarray:
        # numpy (rows, cols) is GGUF ne = [cols, rows]: cols is the input dimension. Matrices
        # are F16 like the converters write them; 1-D tensors stay F32.
        return (rng.standard_normal(shape) * scale).astype(np.float16)

    def vector(n: int, scale: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(n) * scale).astype(np.float32)

    def ones(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)

    tmp = tinygguf.temp_beside(path, ".tinymm-")
    w = gguf.GGUFWriter(tmp, "clip")
    w.add_name(name)
    w.add_description("tiny random-weight LLaVA-style vision projector for tests")
    w.add_file_type(1)  # mostly F16
    w.add_bool("clip.has_vision_encoder", True)
    w.add_bool("clip.has_audio_encoder", False)
    w.add_string("clip.projector_type", PROJECTOR_TYPE)
    w.add_bool("clip.use_gelu", False)  # CLIP's quick_gelu in the encoder
    w.add_uint32("clip.vision.image_size", image_size)
    w.add_uint32("clip.vision.patch_size", patch_size)
    w.add_uint32("clip.vision.embedding_length", n_embd)
    w.add_uint32("clip.vision.feed_forward_length", n_ff)
    w.add_uint32("clip.vision.block_count", n_layer)
    w.add_uint32("clip.vision.projection_dim", n_embd_text)
    w.add_uint32("clip.vision.attention.head_count", n_head)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-5)
    # OpenAI CLIP's normalisation, as LLaVA's converter writes it.
    w.add_array("clip.vision.image_mean", [0.48145466, 0.4578275, 0.40821073])
    w.add_array("clip.vision.image_std", [0.26862954, 0.26130258, 0.27577711])

    # Patch embedding: a conv2d kernel, numpy (out_ch, in_ch, kh, kw) = ggml [kw, kh, 3, n_embd].
    w.add_tensor("v.patch_embd.weight", matrix(n_embd, 3, patch_size, patch_size, scale=0.2))
    w.add_tensor("v.patch_embd.bias", vector(n_embd))
    w.add_tensor("v.position_embd.weight", matrix(n_pos, n_embd, scale=0.2))
    w.add_tensor("v.pre_ln.weight", ones(n_embd))
    w.add_tensor("v.pre_ln.bias", vector(n_embd))
    for i in range(n_layer):
        b = f"v.blk.{i}"
        for t in ("attn_q", "attn_k", "attn_v", "attn_out"):
            w.add_tensor(f"{b}.{t}.weight", matrix(n_embd, n_embd))
            w.add_tensor(f"{b}.{t}.bias", vector(n_embd))
        w.add_tensor(f"{b}.ln1.weight", ones(n_embd))
        w.add_tensor(f"{b}.ln1.bias", vector(n_embd))
        w.add_tensor(f"{b}.ln2.weight", ones(n_embd))
        w.add_tensor(f"{b}.ln2.bias", vector(n_embd))
        w.add_tensor(f"{b}.ffn_up.weight", matrix(n_ff, n_embd))
        w.add_tensor(f"{b}.ffn_up.bias", vector(n_ff))
        w.add_tensor(f"{b}.ffn_down.weight", matrix(n_embd, n_ff))
        w.add_tensor(f"{b}.ffn_down.bias", vector(n_embd))
    # The LLaVA MLP projector: mm.0 (n_embd -> hidden), GELU, mm.2 (hidden -> n_embd_text).
    w.add_tensor("mm.0.weight", matrix(n_mm_hidden, n_embd, scale=0.2))
    w.add_tensor("mm.0.bias", vector(n_mm_hidden))
    w.add_tensor("mm.2.weight", matrix(n_embd_text, n_mm_hidden, scale=0.2))
    w.add_tensor("mm.2.bias", vector(n_embd_text))

    return tinygguf.finish(w, tmp, path)


if __name__ == "__main__":
    write_mmproj(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 576)


Pixel = Callable[[int, int], tuple[int, int, int]]


def png(width: int, height: int, pixel: Pixel) -> bytes:
    """An 8-bit RGB PNG, written with zlib and struct only."""
    rows = b"".join(b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(width))
                    for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def bmp(width: int, height: int, pixel: Pixel) -> bytes:
    """A 24-bit bottom-up BMP."""
    stride = (width * 3 + 3) & ~3
    rows = b"".join(
        b"".join(bytes(reversed(pixel(x, y))) for x in range(width)).ljust(stride, b"\x00")
        for y in reversed(range(height)))
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(rows), 2835, 2835, 0, 0)
    return (b"BM" + struct.pack("<IHHI", 14 + len(info) + len(rows), 0, 0, 14 + len(info))
            + info + rows)
