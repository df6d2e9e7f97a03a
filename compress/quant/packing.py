"""Bit-packed storage of quantized weights: the bytes on disk of a sub-8-bit variant.

``pack(codes, bits)`` stores ``bits``-bit unsigned codes densely, little-endian within each
byte: two 4-bit, four 2-bit or eight 1-bit values per byte (3/5/6/7-bit codes straddle byte
boundaries).  A packed *state* file holds, per quantized tensor, the packed codes ``q - q_min``
plus the float32 multipliers ``s`` and zero points ``z`` (one per tensor / channel / group);
other tensors (biases, norms) are stored as float32.  Layout of the file:

    b"CSPK" | uint32 header length | zlib(JSON header) | raw little-endian blobs

so ``size_bytes`` is ~ sum_i n_i b_i / 8 + scale/zero-point metadata + a few hundred bytes.
Loading returns exactly the dequantized tensors computed before saving (same float32 ops).
"""
from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from compress.quant.affine import check_bits
from compress.quant.fakequant import QuantSpec, dequantize_weight
from compress.variants import ArtifactError, corrupt, missing

MAGIC = b"CSPK"


def pack(codes: torch.Tensor, bits: int) -> np.ndarray:
    """Unsigned integer codes in ``[0, 2^bits)`` (any shape) -> uint8 array of ceil(n bits / 8) bytes."""
    check_bits(bits)
    c = codes.detach().reshape(-1).to(torch.int64).numpy()
    if c.size and (c.min() < 0 or c.max() >= 2**bits):
        raise ValueError(f"codes outside [0, {2**bits - 1}] cannot be packed in {bits} bits")
    # 1. each code -> its `bits` bits, least significant first  (n, bits)
    bitmat = ((c[:, None] >> np.arange(bits)) & 1).astype(np.uint8)
    # 2. the bit stream -> bytes, first bit in the least significant position
    return np.packbits(bitmat.reshape(-1), bitorder="little")


def unpack(buf: np.ndarray, bits: int, n: int) -> torch.Tensor:
    """Inverse of :func:`pack`: the first ``n`` codes as int64."""
    check_bits(bits)
    stream = np.unpackbits(np.asarray(buf, dtype=np.uint8), count=n * bits, bitorder="little")
    bitmat = stream.reshape(n, bits).astype(np.int64)
    return torch.from_numpy((bitmat << np.arange(bits)).sum(1))


@dataclass
class QTensor:
    """One quantized tensor: integer codes (signed or unsigned, integer-valued) + (s, z) blocks."""

    q: torch.Tensor
    s: torch.Tensor  # (R, G) float32 multipliers
    z: torch.Tensor  # (R, G) zero points
    spec: QuantSpec

    def dequantize(self) -> torch.Tensor:
        return dequantize_weight(self.q, self.s, self.z, self.spec)


def _zdtype(bits: int):
    return np.int32 if bits > 15 else np.int16 if bits > 7 else np.int8


def save_packed(path: str | Path, qtensors: dict[str, QTensor], floats: dict[str, torch.Tensor] | None = None,
                meta: dict | None = None) -> Path:
    """Write quantized tensors (bit-packed) and float tensors (float32) to one file.

    The header lists one compact record per tensor (blob lengths follow from shapes and bits,
    so no offsets are stored) and is zlib-compressed: metadata stays a few hundred bytes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    records, blobs = [], []
    for name, qt in qtensors.items():
        sp = qt.spec
        codes = qt.q.detach().to(torch.int64) - sp.qrange[0]  # unsigned codes in [0, 2^b)
        has_z = bool((qt.z != 0).any())  # symmetric signed: all zero points are 0, none stored
        # record: name, shape, bits, signed, symmetric, granularity, group size, block shape, has z
        records.append([name, list(qt.q.shape), sp.bits, int(sp.signed), int(sp.symmetric), sp.granularity[0],
                        sp.group_size, list(qt.s.shape), int(has_z)])
        blobs += [pack(codes, sp.bits).tobytes(), qt.s.detach().float().contiguous().numpy().tobytes()]
        if has_z:
            blobs.append(qt.z.detach().to(torch.int64).numpy().astype(_zdtype(sp.bits)).tobytes())
    for name, t in (floats or {}).items():
        records.append([name, list(t.shape)])
        blobs.append(t.detach().float().contiguous().numpy().tobytes())
    header = zlib.compress(json.dumps([records, meta or {}], separators=(",", ":")).encode(), 9)
    with open(path, "wb") as f:
        f.write(MAGIC + struct.pack("<I", len(header)) + header)
        f.writelines(blobs)
    return path


def load_packed(path: str | Path) -> tuple[dict[str, QTensor], dict[str, torch.Tensor], dict]:
    """Read a file written by :func:`save_packed`: (quantized tensors, float tensors, meta).

    A missing, truncated or otherwise undecodable file is a :class:`~compress.variants.ArtifactError`
    (``<path> is corrupt (<what failed>)``), never a zlib / struct / numpy traceback.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise missing(path) from None
    except OSError as e:
        raise corrupt(path, f"cannot be read: {e.strerror or e}") from None
    if not raw:
        raise corrupt(path, "empty file (0 bytes)")
    if raw[:4] != MAGIC[: len(raw[:4])]:
        raise corrupt(path, f"bad magic {raw[:4]!r}, expected {MAGIC!r}: not a packed quantized state")
    if len(raw) < 8:
        raise corrupt(path, f"truncated: {len(raw)} bytes, shorter than the 8-byte preamble")
    (hlen,) = struct.unpack("<I", raw[4:8])
    try:
        records, meta = json.loads(zlib.decompress(raw[8 : 8 + hlen]))
    except zlib.error as e:
        why = "incomplete data" if 8 + hlen > len(raw) else str(e)
        raise corrupt(path, f"zlib: {why} in the header; {len(raw)} bytes on disk") from None
    except (ValueError, TypeError) as e:  # JSON / unpacking of the decompressed header
        raise corrupt(path, f"header: {e}") from None
    off = 8 + hlen

    def take(nbytes: int, dtype) -> np.ndarray:
        nonlocal off
        if off + nbytes > len(raw):
            raise corrupt(path, f"truncated: {len(raw)} bytes on disk, the header describes at least {off + nbytes}")
        a = np.frombuffer(raw, dtype=dtype, count=nbytes // np.dtype(dtype).itemsize, offset=off).copy()
        off += nbytes
        return a

    qts, floats = {}, {}
    gran = {"t": "tensor", "c": "channel", "g": "group"}
    try:
        for r in records:
            if len(r) == 2:
                name, shape = r
                floats[name] = torch.from_numpy(take(4 * math.prod(shape), np.float32)).reshape(shape)
                continue
            name, shape, bits, signed, sym, g, gs, bshape, has_z = r
            spec = QuantSpec(bits=bits, signed=bool(signed), symmetric=bool(sym), granularity=gran[g], group_size=gs)
            n, nb = math.prod(shape), math.prod(bshape)
            codes = unpack(take(math.ceil(n * bits / 8), np.uint8), bits, n)
            q = (codes + spec.qrange[0]).reshape(shape).to(torch.float32)
            s = torch.from_numpy(take(4 * nb, np.float32)).reshape(bshape)
            zdt = _zdtype(bits)
            z = (torch.from_numpy(take(np.dtype(zdt).itemsize * nb, zdt).astype(np.float32)).reshape(bshape)
                 if has_z else torch.zeros_like(s))
            qts[name] = QTensor(q, s, z, spec)
    except ArtifactError:
        raise
    except (ValueError, TypeError, KeyError, RuntimeError) as e:  # a header record that does not make sense
        raise corrupt(path, f"header record: {type(e).__name__}: {e}") from None
    if off != len(raw):
        raise corrupt(path, f"{len(raw) - off} trailing bytes after the tensors the header describes")
    return qts, floats, meta


__all__ = ["QTensor", "load_packed", "pack", "save_packed", "unpack"]
