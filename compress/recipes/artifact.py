"""The recipe artifact: sparse indices + codes + codebooks + the other tensors, entropy-coded, in one file.

Layout of a file (all integers little-endian)::

    b"CRCP" | version u8 | coder u8 | coder parameter u8 | payload

``payload`` is ``coder(blob)``: ``none`` (the blob as is), ``lzma`` (LZMA2 raw stream, no container
header: the parameter byte holds the preset) or ``zstd`` (a zstandard frame; the parameter byte is
the level).  The entropy coding is the library's; nothing here is a hand-written coder.

``blob`` = u32 header length | header (compact JSON) | sections, in header order.  Every stored
weight tensor is one record:

* positions (all records but ``dense``): Deep Compression's relative indices, i.e. the number of
  pruned positions before each kept one in row-major order, as bytes; a gap >= 255 is written as
  255s (each meaning "255 more") followed by the remainder;
* values: ``float`` kept values as float32; ``kmeans`` one centroid index per kept weight plus the
  codebook (K float32, or K int8 levels + one float32 multiplier when snapped to int8); ``uniform``
  one signed integer code per kept weight plus one float32 multiplier per output row.  Codes are
  one byte each when an entropy coder follows (it models bytes), bit-packed at ``bits`` otherwise.
* other tensors (biases, norms, dense weights) as float32 or float16 (``floats``).

``size_bytes`` of a variant is the length of this file.  :func:`read_artifact` restores exactly
the tensors that were written (the float16 option rounds the float tensors once, before writing).
"""
from __future__ import annotations

import json
import lzma
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from compress.quant.packing import pack, unpack
from compress.quant.sharing import CodedState

MAGIC = b"CRCP"
VERSION = 1
CODERS = {"none": 0, "lzma": 1, "zstd": 2}
FLOAT_DTYPES = {"float32": (torch.float32, np.float32), "float16": (torch.float16, np.float16)}


def lzma_filters(preset: int) -> list[dict]:
    # lc=4, lp=0, pb=0: literal context of the previous byte, no position alignment; measured on
    # LeNet-300-100 index+code streams: 1-3 % smaller than the xz defaults (lc=3, pb=2)
    return [{"id": lzma.FILTER_LZMA2, "preset": preset | lzma.PRESET_EXTREME, "lc": 4, "lp": 0, "pb": 0}]


def compress_bytes(blob: bytes, coder: str, level: int) -> bytes:
    if coder == "none":
        return blob
    if coder == "lzma":
        return lzma.compress(blob, format=lzma.FORMAT_RAW, filters=lzma_filters(level))
    if coder == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=False).compress(blob)
    raise ValueError(f"coder = {coder!r} is unknown; allowed: {', '.join(CODERS)}")


def decompress_bytes(payload: bytes, coder: str, level: int) -> bytes:
    if coder == "none":
        return payload
    if coder == "lzma":
        return lzma.decompress(payload, format=lzma.FORMAT_RAW, filters=lzma_filters(level))
    if coder == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompress(payload)
    raise ValueError(f"unknown coder {coder!r}")


# --------------------------------------------------------------------------- relative indices
def gaps_encode(keep: torch.Tensor) -> np.ndarray:
    """Row-major kept positions -> uint8 relative indices with 255 as the "255 more" escape."""
    idx = np.flatnonzero(keep.reshape(-1).numpy())  # (nnz,)
    gaps = np.diff(np.concatenate([[-1], idx])) - 1  # pruned positions before each kept one
    extra = gaps // 255  # number of escape bytes before each gap's remainder
    out = np.full(int(len(gaps) + extra.sum()), 255, dtype=np.uint8)
    ends = np.cumsum(extra + 1) - 1  # where each remainder goes
    out[ends] = (gaps - 255 * extra).astype(np.uint8)
    return out


def gaps_decode(buf: np.ndarray, numel: int) -> torch.Tensor:
    """Inverse of :func:`gaps_encode`: the bool keep mask (numel,)."""
    buf = buf.astype(np.int64)
    esc = buf == 255
    # each non-escape byte ends one gap; its gap = remainder + 255 * (escapes since the previous end)
    ends = np.flatnonzero(~esc)
    esc_before = np.cumsum(esc)[ends]
    esc_prev = np.concatenate([[0], esc_before[:-1]])
    gaps = buf[ends] + 255 * (esc_before - esc_prev)
    idx = np.cumsum(gaps + 1) - 1
    if len(idx) and idx[-1] >= numel:
        raise ValueError("corrupt relative indices: a position lies beyond the tensor")
    keep = np.zeros(numel, dtype=bool)
    keep[idx] = True
    return torch.from_numpy(keep)


# --------------------------------------------------------------------------- records
@dataclass
class SparseFloat:
    """A pruned, not quantized tensor: kept positions and their float32 values."""

    keep: torch.Tensor
    values: torch.Tensor  # (nnz,) float32

    def dense(self) -> torch.Tensor:
        out = torch.zeros(self.keep.numel(), dtype=torch.float32)
        out[self.keep.reshape(-1)] = self.values
        return out.view(self.keep.shape)


Record = CodedState | SparseFloat | torch.Tensor  # torch.Tensor: stored dense as a float tensor


@dataclass
class Artifact:
    """Everything in one artifact file, decoded."""

    tensors: dict[str, Record]  # weight records in model order
    floats: dict[str, torch.Tensor]  # every other tensor of the state dict
    meta: dict = field(default_factory=dict)

    def qtensors(self) -> dict:
        """``{weight name: QTensor}`` of every weight on an integer grid (uniform codes, int8-snapped
        codebooks): integer weights + per-channel multipliers, pruned positions 0 — the input of int8
        kernels.  Weights not on a grid (float codebooks, float values) are absent."""
        out = {}
        for k, r in self.tensors.items():
            qt = r.to_qtensor() if isinstance(r, CodedState) else None
            if qt is not None:
                out[k] = qt
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The dense fp32 state dict the model loads (weights decoded)."""
        out = {k: v.float() for k, v in self.floats.items()}
        for k, r in self.tensors.items():
            out[k] = r.float() if isinstance(r, torch.Tensor) else r.dense()
        return out


class _Writer:
    def __init__(self, packed: bool):
        self.packed, self.parts = packed, []

    def add(self, a: np.ndarray | bytes) -> int:
        b = a if isinstance(a, bytes) else np.ascontiguousarray(a).tobytes()
        self.parts.append(b)
        return len(b)

    def codes(self, c: np.ndarray, bits: int, offset: int) -> int:
        u = (c.astype(np.int64) + offset)  # unsigned codes in [0, 2^bits)
        if self.packed:
            return self.add(pack(torch.from_numpy(u), bits))
        return self.add(u.astype(np.uint8))


def serialize(art: Artifact, coder: str = "lzma", level: int = 9, floats: str = "float32") -> bytes:
    """The file's bytes (see the module docstring); ``floats`` = dtype of the float tensors."""
    if coder not in CODERS:
        raise ValueError(f"coder = {coder!r} is unknown; allowed: {', '.join(CODERS)}")
    if floats not in FLOAT_DTYPES:
        raise ValueError(f"floats = {floats!r} is unknown; allowed: {', '.join(FLOAT_DTYPES)}")
    if not 0 <= level <= 255:
        raise ValueError(f"level = {level} must fit in one byte")
    w = _Writer(packed=coder == "none")
    fdt = FLOAT_DTYPES[floats][1]
    records = []
    for name, r in art.tensors.items():
        if isinstance(r, torch.Tensor):  # [name, "d", shape, nbytes]
            records.append([name, "d", list(r.shape), w.add(r.detach().float().numpy().astype(fdt))])
            continue
        keep = r.keep.cpu()
        nnz = int(keep.sum())
        n_idx = 0 if nnz == keep.numel() else w.add(gaps_encode(keep))  # 0 index bytes: every position kept
        if isinstance(r, SparseFloat):  # [name, "f", shape, nnz, index bytes]
            w.add(r.values.detach().float().numpy().astype(np.float32))
            records.append([name, "f", list(keep.shape), nnz, n_idx])
        elif r.kind == "kmeans":  # [name, "k", shape, nnz, index bytes, bits, K, snapped]
            k = int(r.centroids.numel())
            w.codes(r.codes.numpy(), r.bits, 0)
            if r.levels is not None:
                w.add(r.levels.numpy().astype(np.int8))
                w.add(r.multipliers.float().numpy().astype(np.float32))
            else:
                w.add(r.centroids.float().numpy().astype(np.float32))
            records.append([name, "k", list(keep.shape), nnz, n_idx, r.bits, k, int(r.levels is not None)])
        else:  # uniform: [name, "u", shape, nnz, index bytes, bits]
            w.codes(r.codes.numpy(), r.bits, 2 ** (r.bits - 1))
            w.add(r.multipliers.float().numpy().astype(np.float32))
            records.append([name, "u", list(keep.shape), nnz, n_idx, r.bits])
    frec = []
    for name, t in art.floats.items():
        frec.append([name, list(t.shape)])
        w.add(t.detach().float().numpy().astype(fdt))
    header = json.dumps({"t": records, "f": frec, "d": floats, "m": art.meta}, separators=(",", ":")).encode()
    blob = struct.pack("<I", len(header)) + header + b"".join(w.parts)
    return MAGIC + bytes([VERSION, CODERS[coder], level]) + compress_bytes(blob, coder, level)


def deserialize(raw: bytes, source: str = "artifact") -> Artifact:
    if raw[:4] != MAGIC:
        raise ValueError(f"{source} is not a recipe artifact (bad magic); rerun the stage that wrote it")
    version, coder_id, level = raw[4], raw[5], raw[6]
    if version != VERSION:
        raise ValueError(f"{source}: artifact version {version} is not {VERSION}; rerun the stage that wrote it")
    coder = {v: k for k, v in CODERS.items()}.get(coder_id)
    if coder is None:
        raise ValueError(f"{source}: unknown coder id {coder_id}")
    blob = decompress_bytes(raw[7:], coder, level)
    (hlen,) = struct.unpack("<I", blob[:4])
    head = json.loads(blob[4 : 4 + hlen])
    off = 4 + hlen
    packed = coder == "none"
    fnp = FLOAT_DTYPES[head["d"]][1]

    def take(nbytes: int, dtype) -> np.ndarray:
        nonlocal off
        a = np.frombuffer(blob, dtype=np.uint8, count=nbytes, offset=off).copy().view(dtype)
        off += nbytes
        return a

    def codes(nnz: int, bits: int, offset: int) -> torch.Tensor:
        if packed:
            c = unpack(take(math.ceil(nnz * bits / 8), np.uint8), bits, nnz)
        else:
            c = torch.from_numpy(take(nnz, np.uint8).astype(np.int64))
        return c - offset

    tensors: dict[str, Record] = {}
    for rec in head["t"]:
        name, kind, shape = rec[0], rec[1], rec[2]
        numel = math.prod(shape)
        if kind == "d":
            tensors[name] = torch.from_numpy(take(numel * np.dtype(fnp).itemsize, fnp).astype(np.float32)).reshape(shape)
            continue
        nnz, n_idx = rec[3], rec[4]
        if n_idx == 0 and nnz == numel:
            keep = torch.ones(shape, dtype=torch.bool)
        else:
            keep = gaps_decode(take(n_idx, np.uint8), numel).reshape(shape)
        if int(keep.sum()) != nnz:
            raise ValueError(f"{source}: {name} decodes to {int(keep.sum())} kept weights, header says {nnz}; the file is corrupt")
        if kind == "f":
            tensors[name] = SparseFloat(keep, torch.from_numpy(take(4 * nnz, np.float32)))
        elif kind == "k":
            bits, k, snapped = rec[5], rec[6], rec[7]
            c = codes(nnz, bits, 0)
            if snapped:
                levels = torch.from_numpy(take(k, np.int8))
                mult = torch.from_numpy(take(4, np.float32))
                tensors[name] = CodedState("kmeans", bits, keep, c, centroids=levels.float() / mult, levels=levels,
                                           multipliers=mult)
            else:
                tensors[name] = CodedState("kmeans", bits, keep, c, centroids=torch.from_numpy(take(4 * k, np.float32)))
        elif kind == "u":
            bits = rec[5]
            c = codes(nnz, bits, 2 ** (bits - 1))
            tensors[name] = CodedState("uniform", bits, keep, c, multipliers=torch.from_numpy(take(4 * shape[0], np.float32)))
        else:
            raise ValueError(f"{source}: unknown record kind {kind!r}")
    floats = {}
    for name, shape in head["f"]:
        n = math.prod(shape)
        floats[name] = torch.from_numpy(take(n * np.dtype(fnp).itemsize, fnp).astype(np.float32)).reshape(shape)
    if off != len(blob):
        raise ValueError(f"{source}: {len(blob) - off} trailing bytes; the file is corrupt, rerun the stage that wrote it")
    return Artifact(tensors, floats, head["m"])


def write_artifact(path: str | Path, art: Artifact, coder: str = "lzma", level: int = 9, floats: str = "float32") -> int:
    """Write the artifact; returns its size in bytes (the file's length)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = serialize(art, coder, level, floats)
    path.write_bytes(raw)
    return path.stat().st_size


def read_artifact(path: str | Path) -> Artifact:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"artifact {path} not found: run the recipes stage that writes it")
    return deserialize(path.read_bytes(), str(path))


__all__ = [
    "CODERS",
    "FLOAT_DTYPES",
    "MAGIC",
    "Artifact",
    "SparseFloat",
    "compress_bytes",
    "decompress_bytes",
    "deserialize",
    "gaps_decode",
    "gaps_encode",
    "read_artifact",
    "serialize",
    "write_artifact",
]
