"""GGUF, llama.cpp's file format for models, read with NumPy, and its block quantizations.

A GGUF file (all numbers little-endian) is

1. a header: the magic ``b"GGUF"``, the format ``version`` (uint32, 2 or 3), the number
   of tensors and the number of metadata entries (uint64 each);
2. the metadata: key/value pairs, each a string key, a uint32 value type and the value
   (integers, floats, bools, strings, or arrays of any of them), e.g.
   ``llama.block_count = 30`` or ``tokenizer.ggml.tokens = [...]``;
3. one entry per tensor: its name, its number of dimensions and the dimensions
   (uint64, the fastest-varying first, ggml's ``ne[0]``: a PyTorch weight (out, in) is
   stored as ``[in, out]``), its ggml type, and the offset of its data;
4. padding up to ``general.alignment`` (32 bytes unless the metadata says otherwise),
   then the tensor data, each tensor at ``data_offset + offset``.

Strings are a uint64 length and UTF-8 bytes. Quantized types store a row as blocks of
32 (or 256) numbers; :func:`dequantize` turns any supported type into float32, one
vectorised NumPy expression per type (see each ``dequantize_*`` for its layout).

Example:
    >>> import io
    >>> data = write_gguf({"general.name": "tiny"}, {"w": np.arange(6, dtype=np.float32).reshape(2, 3)})
    >>> reader = GGUFReader(io.BytesIO(data))
    >>> reader.metadata["general.name"], reader.tensors["w"].shape, reader.tensors["w"].type_name
    ('tiny', (2, 3), 'F32')
    >>> reader.tensor("w")
    array([[0., 1., 2.],
           [3., 4., 5.]], dtype=float32)
"""

from __future__ import annotations

import io
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "GGML_TYPES",
    "GGUFReader",
    "TensorInfo",
    "dequantize",
    "dequantize_q4_0",
    "dequantize_q4_1",
    "dequantize_q8_0",
    "quantize_q4_0",
    "quantize_q4_1",
    "quantize_q8_0",
    "write_gguf",
]

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32

# Metadata value types: id -> (name, struct format of a scalar or None).
_VALUE_TYPES = {
    0: ("UINT8", "<B"),
    1: ("INT8", "<b"),
    2: ("UINT16", "<H"),
    3: ("INT16", "<h"),
    4: ("UINT32", "<I"),
    5: ("INT32", "<i"),
    6: ("FLOAT32", "<f"),
    7: ("BOOL", "<?"),
    8: ("STRING", None),
    9: ("ARRAY", None),
    10: ("UINT64", "<Q"),
    11: ("INT64", "<q"),
    12: ("FLOAT64", "<d"),
}
_STRING, _ARRAY = 8, 9
_NUMPY_OF_VALUE_TYPE = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4",
                        6: "<f4", 7: "?", 10: "<u8", 11: "<i8", 12: "<f8"}  # fmt: skip

#: The ggml tensor types, each id mapped to (name, numbers per block, bytes per block).
GGML_TYPES = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    30: ("BF16", 1, 2),
}


@dataclass
class TensorInfo:
    """One tensor of a GGUF file: ``shape`` in NumPy's order (slowest first, the reverse
    of ggml's ``ne``), its ggml type, and where its bytes start in the file."""

    name: str
    shape: tuple[int, ...]
    type_id: int
    offset: int  # absolute, in the file
    nbytes: int

    @property
    def type_name(self) -> str:
        return GGML_TYPES[self.type_id][0] if self.type_id in GGML_TYPES else str(self.type_id)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


class GGUFReader:
    """Reads a GGUF file: ``metadata`` (dict key -> value, arrays as lists, or NumPy arrays
    for numeric ones), ``tensors`` (dict name -> :class:`TensorInfo`, in file order) and
    :meth:`tensor` (a tensor's numbers as float32, dequantized). The file is memory-mapped,
    so only the tensors asked for are read. Pass a path or a binary file object.

    Example:
        >>> import io
        >>> reader = GGUFReader(io.BytesIO(write_gguf({"n": 3, "xs": [1.5, 2.5]}, {})))
        >>> reader.version, reader.metadata["n"], reader.metadata["xs"].tolist()
        (3, 3, [1.5, 2.5])
    """

    def __init__(self, source):
        if isinstance(source, (str, Path)):
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"GGUFReader: no file at {path}")
            with open(path, "rb") as file:
                self._buffer = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
            self.path = path
        elif isinstance(source, (bytes, bytearray)):
            self._buffer, self.path = bytes(source), None
        else:
            self._buffer, self.path = source.read(), None
        self._view = memoryview(self._buffer)
        self._pos = 0
        magic = bytes(self._view[:4])
        if magic != MAGIC:
            raise ValueError(
                f"{self.path or 'the data'} is not a GGUF file: it starts with {magic!r}, "
                f"not {MAGIC!r}"
            )
        self._pos = 4
        self.version = self._scalar("<I")
        if self.version not in (2, 3):
            raise ValueError(f"GGUF version {self.version} is not supported (2 and 3 are)")
        num_tensors, num_metadata = self._scalar("<Q"), self._scalar("<Q")
        self.metadata: dict = {}
        self.metadata_types: dict[str, str] = {}
        for _ in range(num_metadata):
            key = self._string()
            value_type = self._scalar("<I")
            self.metadata[key] = self._value(value_type)
            self.metadata_types[key] = _VALUE_TYPES[value_type][0]
        infos = []
        for _ in range(num_tensors):
            name = self._string()
            ne = [self._scalar("<Q") for _ in range(self._scalar("<I"))]
            type_id, offset = self._scalar("<I"), self._scalar("<Q")
            infos.append((name, tuple(reversed(ne)), type_id, offset))
        self.alignment = int(self.metadata.get("general.alignment", DEFAULT_ALIGNMENT))
        self.data_offset = -(-self._pos // self.alignment) * self.alignment
        self.tensors: dict[str, TensorInfo] = {}
        for name, shape, type_id, offset in infos:
            size = int(np.prod(shape, dtype=np.int64))
            nbytes = _nbytes(type_id, size, name)
            self.tensors[name] = TensorInfo(name, shape, type_id, self.data_offset + offset, nbytes)
            if self.data_offset + offset + nbytes > len(self._buffer):
                raise ValueError(
                    f"GGUF tensor {name} runs past the end of the file (truncated download?)"
                )

    # -- reading the header ------------------------------------------------------------
    def _scalar(self, fmt: str):
        (value,) = struct.unpack_from(fmt, self._view, self._pos)
        self._pos += struct.calcsize(fmt)
        return value

    def _string(self) -> str:
        length = self._scalar("<Q")
        text = bytes(self._view[self._pos : self._pos + length]).decode("utf-8", "replace")
        self._pos += length
        return text

    def _value(self, value_type: int):
        if value_type not in _VALUE_TYPES:
            raise ValueError(f"GGUF metadata value type {value_type} is unknown")
        if value_type == _STRING:
            return self._string()
        if value_type == _ARRAY:
            item_type, count = self._scalar("<I"), self._scalar("<Q")
            if item_type in _NUMPY_OF_VALUE_TYPE:  # numbers: one read, as an array
                dtype = np.dtype(_NUMPY_OF_VALUE_TYPE[item_type])
                array = np.frombuffer(self._view, dtype, count, self._pos).copy()
                self._pos += dtype.itemsize * count
                return array
            return [self._value(item_type) for _ in range(count)]
        return self._scalar(_VALUE_TYPES[value_type][1])

    # -- tensors -----------------------------------------------------------------------
    def raw(self, name: str) -> np.ndarray:
        """The bytes of tensor ``name`` as a uint8 array (a view of the mapped file)."""
        info = self._info(name)
        return np.frombuffer(self._buffer, np.uint8, info.nbytes, info.offset)

    def tensor(self, name: str) -> np.ndarray:
        """Tensor ``name`` as float32 of shape ``info.shape`` (dequantized if need be)."""
        info = self._info(name)
        return dequantize(self.raw(name), info.type_id, info.shape)

    def _info(self, name: str) -> TensorInfo:
        if name not in self.tensors:
            some = ", ".join(list(self.tensors)[:6])
            raise KeyError(f"no tensor {name!r} in the GGUF file; it has {some}, ...")
        return self.tensors[name]

    def type_counts(self) -> dict[str, int]:
        """How many tensors of each ggml type the file holds, e.g. ``{"Q4_1": 210, ...}``."""
        counts: dict[str, int] = {}
        for info in self.tensors.values():
            counts[info.type_name] = counts.get(info.type_name, 0) + 1
        return counts

    def close(self) -> None:
        """Release the memory map (tensors read before stay valid only if copied)."""
        self._view.release()
        if isinstance(self._buffer, mmap.mmap):
            self._buffer.close()

    def __repr__(self) -> str:
        return (
            f"GGUFReader({str(self.path) if self.path else '<bytes>'}, version={self.version}, "
            f"metadata={len(self.metadata)}, tensors={len(self.tensors)})"
        )


def _nbytes(type_id: int, size: int, name: str = "") -> int:
    if type_id not in GGML_TYPES:
        raise ValueError(f"GGUF tensor {name} has ggml type {type_id}, which lmcore does not know")
    type_name, block, block_bytes = GGML_TYPES[type_id]
    if size % block:
        raise ValueError(f"GGUF tensor {name}: {size} numbers do not fill {type_name} blocks")
    return size // block * block_bytes


# ---------------------------------------------------------------------------------------
# Dequantization


def _blocks(raw: np.ndarray, block_bytes: int) -> np.ndarray:
    """The bytes (N,) as (N / block_bytes, block_bytes), one row per block."""
    raw = np.asarray(raw, dtype=np.uint8).reshape(-1)
    if raw.size % block_bytes:
        raise ValueError(f"{raw.size} bytes are not whole blocks of {block_bytes} bytes")
    return raw.reshape(-1, block_bytes)


def _f16(blocks: np.ndarray, start: int) -> np.ndarray:
    """The float16 at bytes ``start:start+2`` of each block, as float32 (n, 1)."""
    return blocks[:, start : start + 2].copy().view("<f2").astype(np.float32)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """16 bytes per block (n, 16) → 32 four-bit numbers (n, 32): the low nibbles are
    numbers 0-15, the high nibbles numbers 16-31 (ggml's order, not interleaved)."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1)


def dequantize_q4_0(raw) -> np.ndarray:
    """Q4_0: blocks of 32 numbers in 18 bytes: a float16 scale ``d``, then 16 bytes of
    4-bit codes q in 0..15 (byte j holds number j in its low nibble and number j + 16 in
    its high one); x = (q - 8) * d. 4.5 bits per number.

    Example:
        >>> x = np.linspace(-1, 1, 32, dtype=np.float32)
        >>> float(np.abs(dequantize_q4_0(quantize_q4_0(x)) - x).max()) <= 0.125  # d = 1/8
        True
    """
    blocks = _blocks(raw, 18)
    q = _nibbles(blocks[:, 2:]).astype(np.int8) - 8  # (n, 32)
    return (q * _f16(blocks, 0)).reshape(-1)


def dequantize_q4_1(raw) -> np.ndarray:
    """Q4_1: blocks of 32 numbers in 20 bytes: float16 scale ``d``, float16 minimum ``m``,
    then 16 bytes of 4-bit codes q in 0..15 (low nibbles numbers 0-15, high nibbles 16-31);
    x = q * d + m. The offset m fits blocks that are not centred on 0; 5 bits per number.

    Example:
        >>> x = np.linspace(0, 3, 32, dtype=np.float32)
        >>> float(np.abs(dequantize_q4_1(quantize_q4_1(x)) - x).max()) < 0.11
        True
    """
    blocks = _blocks(raw, 20)
    q = _nibbles(blocks[:, 4:]).astype(np.float32)  # (n, 32)
    return (q * _f16(blocks, 0) + _f16(blocks, 2)).reshape(-1)


def dequantize_q8_0(raw) -> np.ndarray:
    """Q8_0: blocks of 32 numbers in 34 bytes: a float16 scale ``d`` and 32 int8 codes q;
    x = q * d. 8.5 bits per number, nearly lossless for weights.

    Example:
        >>> x = np.linspace(-1, 1, 32, dtype=np.float32)
        >>> float(np.abs(dequantize_q8_0(quantize_q8_0(x)) - x).max()) < 0.005
        True
    """
    blocks = _blocks(raw, 34)
    q = blocks[:, 2:].copy().view(np.int8)  # (n, 32)
    return (q * _f16(blocks, 0)).reshape(-1)


def dequantize(raw, type_id: int, shape: tuple[int, ...]) -> np.ndarray:
    """The numbers of a tensor of ggml type ``type_id`` (bytes ``raw``) as float32 ``shape``.

    Example:
        >>> x = np.linspace(-2, 2, 64, dtype=np.float32)
        >>> dequantize(quantize_q8_0(x), 8, (2, 32)).shape
        (2, 32)
    """
    readers = {
        0: lambda r: np.frombuffer(r, "<f4"),
        1: lambda r: np.frombuffer(r, "<f2"),
        30: lambda r: (np.frombuffer(r, "<u2").astype(np.uint32) << 16).view(np.float32),
        2: dequantize_q4_0,
        3: dequantize_q4_1,
        8: dequantize_q8_0,
    }
    if type_id not in readers:
        name = GGML_TYPES.get(type_id, (f"type {type_id}",))[0]
        raise NotImplementedError(
            f"lmcore cannot dequantize ggml {name} tensors yet; it reads "
            + ", ".join(GGML_TYPES[t][0] for t in sorted(readers))
        )
    raw = np.asarray(raw, dtype=np.uint8).reshape(-1)
    values = readers[type_id](raw.tobytes() if type_id in (0, 1, 30) else raw)
    return values.astype(np.float32, copy=False).reshape(shape)


# ---------------------------------------------------------------------------------------
# Quantization (the reference encoders, for tests and for writing small files)


def _as_blocks(x, block: int = 32) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    if x.size % block:
        raise ValueError(f"quantizing needs a multiple of {block} numbers, got {x.size}")
    return x.reshape(-1, block)


def _pack(d: np.ndarray, *rest: np.ndarray) -> np.ndarray:
    parts = [d.astype("<f2").reshape(-1, 1).view(np.uint8)]
    parts += [p if p.dtype == np.uint8 else p.view(np.uint8) for p in rest]
    return np.concatenate(parts, axis=1).reshape(-1)


def quantize_q8_0(x) -> np.ndarray:
    """Q8_0 bytes of ``x`` (a multiple of 32 numbers), as ggml makes them:
    d = max|x| / 127, q = round(x / d).

    Example:
        >>> quantize_q8_0(np.ones(32)).shape                # 1 block of 34 bytes
        (34,)
    """
    x = _as_blocks(x)
    d = np.abs(x).max(axis=1) / 127
    inverse = np.divide(1, d, out=np.zeros_like(d), where=d > 0)
    q = np.round(x * inverse[:, None]).astype(np.int8)
    return _pack(d, q)


def quantize_q4_0(x) -> np.ndarray:
    """Q4_0 bytes of ``x``, as ggml makes them: the number of largest magnitude maps to
    code -8, d = that number / -8, q = clip(round(x / d) + 8, 0, 15).

    Example:
        >>> quantize_q4_0(np.ones(64)).shape                # 2 blocks of 18 bytes
        (36,)
    """
    x = _as_blocks(x)
    extreme = x[np.arange(len(x)), np.abs(x).argmax(axis=1)]
    d = extreme / -8
    inverse = np.divide(1, d, out=np.zeros_like(d), where=d != 0)
    q = np.clip(np.floor(x * inverse[:, None] + 8.5), 0, 15).astype(np.uint8)
    return _pack(d, q[:, :16] | (q[:, 16:] << 4))


def quantize_q4_1(x) -> np.ndarray:
    """Q4_1 bytes of ``x``: m = min(x), d = (max(x) - m) / 15, q = round((x - m) / d).

    Example:
        >>> quantize_q4_1(np.ones(32)).shape
        (20,)
    """
    x = _as_blocks(x)
    low, high = x.min(axis=1), x.max(axis=1)
    d = (high - low) / 15
    inverse = np.divide(1, d, out=np.zeros_like(d), where=d > 0)
    q = np.clip(np.floor((x - low[:, None]) * inverse[:, None] + 0.5), 0, 15).astype(np.uint8)
    parts = [d.astype("<f2").reshape(-1, 1).view(np.uint8)]
    parts += [low.astype("<f2").reshape(-1, 1).view(np.uint8), q[:, :16] | (q[:, 16:] << 4)]
    return np.concatenate(parts, axis=1).reshape(-1)


# ---------------------------------------------------------------------------------------
# Writing (small files for tests and examples)


def _write_value(out: io.BytesIO, value) -> int:
    """Write ``value`` (without its type) and return its GGUF value type."""
    if isinstance(value, bool):
        out.write(struct.pack("<?", value))
        return 7
    if isinstance(value, (int, np.integer)):
        out.write(struct.pack("<i" if -(2**31) <= value < 2**31 else "<q", int(value)))
        return 5 if -(2**31) <= value < 2**31 else 11
    if isinstance(value, (float, np.floating)):
        out.write(struct.pack("<f", float(value)))
        return 6
    if isinstance(value, str):
        data = value.encode("utf-8")
        out.write(struct.pack("<Q", len(data)) + data)
        return _STRING
    if isinstance(value, (list, tuple, np.ndarray)):
        items = io.BytesIO()
        types = {_write_value(items, item) for item in value} or {5}
        if len(types) != 1:
            raise TypeError("a GGUF array holds values of one type only")
        out.write(struct.pack("<IQ", types.pop(), len(value)) + items.getvalue())
        return _ARRAY
    raise TypeError(f"GGUF metadata cannot hold a {type(value).__name__}")


def write_gguf(metadata: dict, tensors: dict, alignment: int = DEFAULT_ALIGNMENT) -> bytes:
    """A GGUF file (version 3) as bytes: ``metadata`` (ints as INT32/INT64, floats as
    FLOAT32, bools, strings, lists of one of them) and float32 ``tensors`` (name -> array,
    stored as F32). For tests and examples; real models come from llama.cpp's tools.

    Example:
        >>> write_gguf({}, {})[:4]
        b'GGUF'
    """
    out = io.BytesIO()
    out.write(MAGIC + struct.pack("<IQQ", 3, len(tensors), len(metadata)))
    for key, value in metadata.items():
        _write_value(out, key)
        body = io.BytesIO()
        out.write(struct.pack("<I", _write_value(body, value)) + body.getvalue())
    offset, datas = 0, []
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        _write_value(out, name)
        shape = np.shape(array)
        out.write(
            struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", n) for n in shape[::-1])
        )
        out.write(struct.pack("<IQ", 0, offset))
        datas.append(data + b"\0" * (-len(data) % alignment))
        offset += len(datas[-1])
    out.write(b"\0" * (-out.tell() % alignment))
    return out.getvalue() + b"".join(datas)
