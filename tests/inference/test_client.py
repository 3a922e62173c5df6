"""The request client: importable without PyTorch, packs cut to the SLO and the replicas, and
a pack's result read back per row."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from inference.client import pack_cap, pack_sizes, read_pack, read_response
from inference.wire import encode_arrays


def test_the_client_imports_without_pytorch_or_the_runtime():
    code = (
        "import sys, inference.client as c; "
        "c.send_request, c.read_response, c.send_pack, c.read_pack; "
        "bad = sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('torch', 'onnxruntime', 'models') "
        "or m in ('inference.worker', 'inference.batching')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_pack_is_capped_so_its_compute_meets_the_slo():
    # 1,000 windows at 0.28 ms: 280 ms on one replica, against the trajectory head's 50 ms.
    cap = pack_cap(50.0, 0.28, default_rows=32)
    assert cap == 89  # 25 ms of compute: half the SLO
    sizes = pack_sizes(1000, cap)
    assert sum(sizes) == 1000 and max(sizes) <= cap and len(sizes) == 12
    assert max(sizes) - min(sizes) <= 1
    assert pack_cap(50.0, None, default_rows=32) == 32  # unmeasured: one forward pass
    assert pack_cap(50.0, 1000.0, default_rows=32) == 1  # never zero


def test_a_pack_is_split_across_replicas_while_each_part_fills_a_forward_pass():
    assert pack_sizes(100, 500, replicas=3, min_rows=32) == [34, 33, 33]
    assert pack_sizes(40, 500, replicas=3, min_rows=32) == [40]  # too few to share
    assert pack_sizes(0, 10) == []


def test_a_packs_result_reads_back_one_response_per_row():
    outputs = {"eta_s": np.arange(15, dtype=np.float32).reshape(5, 3)}
    result = {
        "outputs": encode_arrays(outputs),
        "keys": list("abcde"),
        "chunks": [[0, 2, 1.0, 4.0, 2, 1], [2, 5, 3.0, 5.0, 8, 2]],
        "queue_ms": 3.0,
        "compute_ms": 9.0,
        "batch_rows": 5,
        "batch_requests": 2,
    }
    rows = read_pack(result)
    assert len(rows) == 5
    np.testing.assert_array_equal(rows[3].outputs["eta_s"], outputs["eta_s"][3:4])
    assert (rows[1].queue_ms, rows[1].batch_rows) == (1.0, 2)
    assert (rows[4].compute_ms, rows[4].batch_requests) == (5.0, 2)
    assert read_response(result).batch_rows == 5


@pytest.mark.parametrize("rows", [1, 7])
def test_a_plain_result_reads_as_a_pack_of_its_rows(rows):
    result = {
        "outputs": encode_arrays({"y": np.ones((rows, 2), dtype=np.float32)}),
        "queue_ms": 1.0,
        "compute_ms": 2.0,
        "batch_rows": 9,
        "batch_requests": 3,
    }
    assert [r.batch_rows for r in read_pack(result)] == [9] * rows
