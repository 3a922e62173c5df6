"""Device discovery: names are strings, the CPU is sized as this process sees it, accelerators
come from what the networks' runtime can reach."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from inference import devices
from inference.devices import (
    DeviceInfo,
    canonical_device,
    cpu_info,
    discover_devices,
    find_device,
    meminfo,
    parse_device,
)


def test_the_cpu_is_offered_last_with_this_process_cores_and_memory():
    found = discover_devices()
    cpu = found[-1]
    assert cpu.name == "cpu" and cpu.kind == "cpu" and cpu.index is None
    assert cpu.cores == tuple(sorted(os.sched_getaffinity(0)))
    assert 1 <= cpu.compute_units <= len(cpu.cores)
    assert cpu.memory_bytes > 0 and 0 < (cpu.memory_free_bytes or 0) <= cpu.memory_bytes
    assert all(isinstance(d.name, str) for d in found)


def test_a_device_description_survives_json_for_the_node_registry():
    cpu = cpu_info()
    again = DeviceInfo.from_dict(json.loads(json.dumps(cpu.to_dict())))
    assert again == cpu


@pytest.mark.parametrize(
    ("name", "parsed", "canonical"),
    [
        ("cpu", ("cpu", None), "cpu"),
        ("cuda", ("cuda", 0), "cuda:0"),
        ("NPU:3", ("npu", 3), "npu:3"),
    ],
)
def test_device_names_are_parsed_without_falling_back(name, parsed, canonical):
    assert parse_device(name) == parsed
    assert canonical_device(name) == canonical


@pytest.mark.parametrize("name", ["gpu:0", "cpu:0", "cuda:x", ""])
def test_a_misspelt_device_is_refused_rather_than_becoming_a_cpu(name):
    with pytest.raises(ValueError, match="unknown device"):
        parse_device(name)


def test_a_device_this_node_lacks_is_a_lookup_error():
    with pytest.raises(LookupError, match="cuda:7"):
        find_device("cuda:7", [cpu_info()])


def test_meminfo_is_read_in_bytes(tmp_path):
    path = tmp_path / "meminfo"
    path.write_text("MemTotal:       1024 kB\nMemAvailable:    512 kB\nHugePages_Total:  0\n")
    assert meminfo(path) == {"MemTotal": 1 << 20, "MemAvailable": 1 << 19, "HugePages_Total": 0}
    assert meminfo(tmp_path / "missing") == {}


def _fake_proc(tmp_path: Path, mounts: str, cgroup: str) -> tuple[Path, Path]:
    (tmp_path / "mountinfo").write_text(mounts)
    (tmp_path / "cgroup").write_text(cgroup)
    return tmp_path / "cgroup", tmp_path / "mountinfo"


def test_cgroup_directories_are_found_on_a_v2_host(tmp_path):
    proc_cgroup, mountinfo = _fake_proc(
        tmp_path,
        "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
        "0::/kubepods/pod1/worker\n",
    )
    found = devices._own_cgroup_dirs(proc_cgroup, mountinfo)
    assert found == {"": Path("/sys/fs/cgroup/kubepods/pod1/worker")}


def test_cgroup_directories_are_found_on_a_v1_host_inside_a_namespace(tmp_path):
    proc_cgroup, mountinfo = _fake_proc(
        tmp_path,
        "32 31 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
        "4:memory:/user/1\n3:cpu,cpuacct:/docker/abc/slice\n",
    )
    found = devices._own_cgroup_dirs(proc_cgroup, mountinfo)
    assert found["cpu"] == Path("/sys/fs/cgroup/cpu,cpuacct/slice")
    assert found["memory"] == Path("/sys/fs/cgroup/memory/user/1")


def test_a_cuda_gpu_is_described_by_its_memory_and_multiprocessors(monkeypatch):
    props = SimpleNamespace(
        name="NVIDIA H100", total_memory=80 << 30, multi_processor_count=132, major=9, minor=0
    )
    monkeypatch.setattr(devices, "available_devices", lambda: ["cuda:0", "cpu"])
    monkeypatch.setattr(devices.torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(devices.torch.cuda, "mem_get_info", lambda i: (70 << 30, 80 << 30))
    gpu, cpu = discover_devices()
    assert (gpu.name, gpu.kind, gpu.index, gpu.compute_units) == ("cuda:0", "cuda", 0, 132)
    assert (gpu.memory_bytes, gpu.memory_free_bytes, gpu.capability) == (80 << 30, 70 << 30, "9.0")
    assert gpu.extra["mps"] is False and cpu.name == "cpu"


def test_an_accelerator_whose_properties_fail_is_left_out(monkeypatch):
    def broken(index):
        raise RuntimeError("CUDA error: device busy or unavailable")

    monkeypatch.setattr(devices, "available_devices", lambda: ["cuda:0", "cpu"])
    monkeypatch.setattr(devices.torch.cuda, "get_device_properties", broken)
    assert [d.name for d in discover_devices()] == ["cpu"]


def test_mps_is_detected_by_its_control_pipe(tmp_path):
    assert devices.mps_active(str(tmp_path)) is False
    (tmp_path / "control").touch()
    assert devices.mps_active(str(tmp_path)) is True
