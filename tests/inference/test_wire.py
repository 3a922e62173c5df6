"""Arrays over the bus: exact round trips as JSON, and malformed payloads refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inference.wire import decode_array, decode_arrays, encode_array, encode_arrays


def test_arrays_round_trip_through_json_bit_for_bit():
    rng = np.random.default_rng(0)
    arrays = {
        "window": rng.normal(size=(2, 3, 16)).astype(np.float32),
        "label": np.array([1, 4], dtype=np.int64),
        "anomalous": np.array([True, False]),
        "big_endian": np.arange(3, dtype=">f8"),
    }
    back = decode_arrays(json.loads(json.dumps(encode_arrays(arrays))))
    for name, value in arrays.items():
        assert back[name].shape == value.shape and np.array_equal(back[name], value)
    assert back["big_endian"].dtype == np.dtype("<f8")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"dtype": "<f4", "shape": [2], "b64": "AAAA"}, "needs 8"),
        ({"dtype": "|O", "shape": [1], "b64": ""}, "numbers only"),
        ({"dtype": "<f4", "shape": [1]}, "malformed"),
        ({"dtype": "<f4", "shape": [1], "b64": "not base64!"}, "malformed"),
    ],
)
def test_a_malformed_array_payload_is_refused(payload, message):
    with pytest.raises(ValueError, match=message):
        decode_array(payload)


def test_only_numeric_arrays_are_sent():
    with pytest.raises(TypeError, match="numbers only"):
        encode_array(np.array(["a", "b"]))
