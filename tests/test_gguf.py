"""GGUF reading and dequantization: hand-made blocks, a written file, and the real file."""

import io

import numpy as np
import pytest

from lmcore import gguf
from lmcore.gguf import GGUFReader, dequantize, write_gguf


def _f16_bytes(value):
    return np.frombuffer(np.float16(value).tobytes(), np.uint8)


def test_q8_0_block_by_hand():
    # one block: d = 0.5, codes -3, 0, 1, ... -> x = code * d
    codes = np.arange(-16, 16, dtype=np.int8)
    block = np.concatenate([_f16_bytes(0.5), codes.view(np.uint8)])
    np.testing.assert_array_equal(gguf.dequantize_q8_0(block), codes * 0.5)


def test_q4_0_block_by_hand():
    # byte j: low nibble = number j, high nibble = number j + 16; x = (q - 8) * d
    q = np.arange(32) % 16
    packed = (q[:16] | (q[16:] << 4)).astype(np.uint8)
    block = np.concatenate([_f16_bytes(2.0), packed])
    np.testing.assert_array_equal(gguf.dequantize_q4_0(block), (q - 8) * 2.0)


def test_q4_1_block_by_hand():
    q = (np.arange(32) * 7) % 16
    packed = (q[:16] | (q[16:] << 4)).astype(np.uint8)
    block = np.concatenate([_f16_bytes(0.25), _f16_bytes(-1.0), packed])
    np.testing.assert_allclose(gguf.dequantize_q4_1(block), q * 0.25 - 1.0)


@pytest.mark.parametrize(
    "quantize, dequantize_, bound",
    [
        (gguf.quantize_q8_0, gguf.dequantize_q8_0, lambda x: np.abs(x).max() / 127 / 2),
        (gguf.quantize_q4_0, gguf.dequantize_q4_0, lambda x: np.abs(x).max() / 8),
        (gguf.quantize_q4_1, gguf.dequantize_q4_1, lambda x: np.ptp(x) / 15 / 2),
    ],
)
def test_round_trip_error_within_half_a_step(quantize, dequantize_, bound):
    rng = np.random.default_rng(0)
    for x in rng.normal(size=(20, 32)).astype(np.float32):
        error = np.abs(dequantize_(quantize(x)) - x).max()
        assert error <= bound(x) * 1.01 + 1e-3  # float16 scales round a little


def test_sizes_of_blocks():
    x = np.ones(64, np.float32)
    assert gguf.quantize_q8_0(x).size == 2 * 34
    assert gguf.quantize_q4_0(x).size == 2 * 18
    assert gguf.quantize_q4_1(x).size == 2 * 20


def test_reader_on_written_file_every_value_type():
    metadata = {
        "general.architecture": "llama",
        "n": 7,
        "big": 2**40,
        "eps": 1e-5,
        "flag": True,
        "names": ["a", "bé", "c"],
        "ints": [1, 2, 3],
        "general.alignment": 64,
    }
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    reader = GGUFReader(io.BytesIO(write_gguf(metadata, {"w": w, "b": np.ones(5)}, alignment=64)))
    m = reader.metadata
    assert (m["n"], m["big"], m["flag"], m["names"]) == (7, 2**40, True, ["a", "bé", "c"])
    assert m["ints"].tolist() == [1, 2, 3] and abs(m["eps"] - 1e-5) < 1e-10
    assert reader.data_offset % 64 == 0 and reader.alignment == 64
    np.testing.assert_array_equal(reader.tensor("w"), w)
    np.testing.assert_array_equal(reader.tensor("b"), np.ones(5))
    assert reader.tensors["w"].shape == (3, 4) and reader.type_counts() == {"F32": 2}


def test_dequantize_f16_and_shape():
    x = np.linspace(-3, 3, 8).astype(np.float16)
    np.testing.assert_array_equal(dequantize(x.view(np.uint8), 1, (2, 4)), x.reshape(2, 4))


def test_clear_errors():
    with pytest.raises(ValueError, match="not a GGUF file"):
        GGUFReader(io.BytesIO(b"GGML" + bytes(20)))
    with pytest.raises(NotImplementedError, match="Q6_K"):
        dequantize(np.zeros(210, np.uint8), 14, (256,))
    reader = GGUFReader(io.BytesIO(write_gguf({}, {"w": np.ones(2)})))
    with pytest.raises(KeyError, match="no tensor 'v'"):
        reader.tensor("v")
    with pytest.raises(FileNotFoundError):
        GGUFReader("/nonexistent/model.gguf")


def test_real_file_types_and_blocks():
    from lmcore.models.llama import smollm2_path

    try:
        path = smollm2_path()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    reader = GGUFReader(path)
    assert reader.type_counts() == {"Q8_0": 1, "F32": 61, "Q4_1": 210}
    assert reader.metadata["llama.block_count"] == 30
    q = reader.tensor("blk.0.attn_q.weight")
    assert q.shape == (576, 576) and q.dtype == np.float32 and np.isfinite(q).all()
    # re-quantizing a Q8_0 row reproduces its bytes up to rounding of the scale
    raw = reader.raw("token_embd.weight")[: 34 * 18]  # the first row: 576 numbers
    row = gguf.dequantize_q8_0(raw)
    np.testing.assert_allclose(gguf.dequantize_q8_0(gguf.quantize_q8_0(row)), row, atol=1e-6)
    try:  # the gguf package (llama.cpp's own reader), where installed, agrees
        from gguf import GGUFReader as Reference
        from gguf.quants import dequantize as reference_dequantize
    except ImportError:
        return
    ref = Reference(path)
    tensor = next(t for t in ref.tensors if t.name == "blk.0.ffn_down.weight")
    expected = reference_dequantize(tensor.data, tensor.tensor_type)
    np.testing.assert_array_equal(reader.tensor("blk.0.ffn_down.weight"), expected)
