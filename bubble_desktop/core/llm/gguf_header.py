"""Read a GGUF file's header (metadata and tensor table) without parsing its vocabulary.

``gguf.GGUFReader`` builds numpy views for every field, a Python object per vocabulary entry
included: 3–5 s and ~15 MB for SmolLM2's 49k-token vocabulary, more for Qwen's 151k. Loading a
model needs a dozen scalars and the tensor table, so this reads the header with ``struct`` over a
memory map and skips array contents (string arrays by their lengths). The format is the documented
GGUF v2/v3 layout (ggml's docs/gguf.md); type sizes come from the ``gguf`` package's constants
(loaded without the package, which imports numpy: ``gguf_constants``).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCALARS: dict[int, str] = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9
_SMALL_ARRAY = 1024  # arrays up to this length are read (per-layer head counts); longer ones only counted


class GgufHeaderError(ValueError):
    """The header is cut off or malformed."""


@dataclass(frozen=True)
class LongArray:
    """A metadata array too long to be worth reading (a vocabulary): its element type and length."""

    item_type: int
    length: int


@dataclass(frozen=True)
class GgufHeader:
    version: int
    metadata: dict[str, Any]
    # per tensor: (name, absolute offset of its data, its size in bytes)
    tensors: tuple[tuple[str, int, int], ...]

    @property
    def data_end(self) -> int:
        """Where the last tensor's data ends: beyond the file size means a cut-off file."""
        return max((offset + size for _, offset, size in self.tensors), default=0)


class _Cursor:
    def __init__(self, buf: mmap.mmap) -> None:
        self.buf = buf
        self.pos = 0
        self.size = len(buf)

    def take(self, fmt: str) -> Any:
        n = struct.calcsize(fmt)
        if self.pos + n > self.size:
            raise GgufHeaderError(f"the header ends early (at byte {self.pos:,})")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def skip(self, n: int) -> None:
        if n < 0 or self.pos + n > self.size:
            raise GgufHeaderError(f"the header ends early (at byte {self.pos:,})")
        self.pos += n

    def string(self) -> str:
        n = self.take("<Q")
        start = self.pos
        self.skip(n)
        return bytes(self.buf[start : self.pos]).decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            return self.take(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            item_type = self.take("<I")
            length = self.take("<Q")
            if length > _SMALL_ARRAY:
                if item_type in _SCALARS:
                    self.skip(length * struct.calcsize(_SCALARS[item_type]))
                elif item_type == _STRING:
                    for _ in range(length):
                        self.skip(self.take("<Q"))
                else:
                    raise GgufHeaderError(f"an array of type {item_type} cannot be skipped")
                return LongArray(item_type, length)
            return [self.value(item_type) for _ in range(length)]
        raise GgufHeaderError(f"unknown metadata value type {vtype}")


def read_header(path: str | Path) -> GgufHeader:
    """Metadata (long arrays as :class:`LongArray`) and the tensor table; GgufHeaderError when malformed."""
    from bubble_desktop.core.llm.gguf_constants import gguf_constants

    constants = gguf_constants()  # not ``import gguf``: that imports numpy (a GUI stall at every load)
    quant_sizes, quant_type = constants.GGML_QUANT_SIZES, constants.GGMLQuantizationType

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        c = _Cursor(buf)
        if bytes(buf[:4]) != b"GGUF":
            raise GgufHeaderError("no GGUF signature")
        c.skip(4)
        version = c.take("<I")
        if version not in (2, 3):
            raise GgufHeaderError(f"GGUF version {version} is not supported")
        n_tensors = c.take("<Q")
        n_kv = c.take("<Q")
        if n_tensors > 1_000_000 or n_kv > 1_000_000:
            raise GgufHeaderError("implausible tensor or metadata counts")
        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = c.string()
            metadata[key] = c.value(c.take("<I"))
        infos = []
        for _ in range(n_tensors):
            name = c.string()
            n_dims = c.take("<I")
            if n_dims > 8:
                raise GgufHeaderError(f"tensor {name!r} has {n_dims} dimensions")
            count = 1
            for _ in range(n_dims):
                count *= c.take("<Q")
            ggml_type = c.take("<I")
            offset = c.take("<Q")
            try:
                block, type_size = quant_sizes[quant_type(ggml_type)]
            except (ValueError, KeyError) as exc:
                raise GgufHeaderError(f"tensor {name!r} has an unknown type {ggml_type}") from exc
            infos.append((name, offset, count // block * type_size))
        alignment = int(metadata.get("general.alignment", 32) or 32)
        data_start = -(-c.pos // alignment) * alignment
    tensors = tuple((name, data_start + offset, size) for name, offset, size in infos)
    return GgufHeader(version=version, metadata=metadata, tensors=tensors)
