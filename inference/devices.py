"""What this node has to offer the pool: its CUDA GPUs, Ascend NPUs and CPUs, with capacity.

The scheduler places model replicas by memory and compute share, so discovery reports, per
device, the memory it can hand out and its compute units (streaming multiprocessors on CUDA, AI
cores on an Ascend NPU, usable cores on the CPU). Device names are the strings the networks
take (``"cuda:0"``, ``"npu:0"``, ``"cpu"``): which accelerators this process can reach comes
from ``models.devices.available_devices`` (the one place that knows CUDA and torch_npu), so a
device the runtime cannot use is never offered to the scheduler.

The CPU is sized the way a container sees it, not the host: the cores in this process's affinity
mask, capped by a cgroup CPU quota, and memory capped by a cgroup memory limit. A node in a
Kubernetes pod with ``cpu: 2`` on a 64-core host offers 2 cores, not 64.

Discovery initialises CUDA in the calling process (querying device properties does); worker
processes that serve slices are therefore started with the ``spawn`` method, never forked from a
process that has touched CUDA.
"""

from __future__ import annotations

import math
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from models.devices import available_devices, torch_npu_module

KINDS = ("cuda", "npu", "cpu")


@dataclass(frozen=True)
class DeviceInfo:
    """One device this node offers to the pool.

    ``memory_bytes``: what slices may share (total device memory; on the CPU the smaller of the
    machine's and the cgroup's limit). ``compute_units``: SMs, AI cores or usable CPU cores;
    a slice's ``compute_share`` is a fraction of these. ``cores``: the CPU ids this process may
    run on (CPU only). ``cpu_quota``: the cgroup's CPU quota in cores, None when unlimited.
    """

    name: str
    kind: str
    index: int | None
    model: str
    memory_bytes: int
    compute_units: int
    memory_free_bytes: int | None = None
    cores: tuple[int, ...] = ()
    cpu_quota: float | None = None
    capability: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, for the node's registration in Redis and the pool API."""
        data = asdict(self)
        data["cores"] = list(self.cores)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeviceInfo:
        values = dict(data)
        values["cores"] = tuple(values.get("cores") or ())
        values["extra"] = dict(values.get("extra") or {})
        return cls(**values)


def parse_device(name: str) -> tuple[str, int | None]:
    """``"cuda:1"`` -> ``("cuda", 1)``, ``"cpu"`` -> ``("cpu", None)``; anything else is refused.

    Unlike ``models.devices.choose_device`` this never falls back: a slice names a device that
    discovery found, and a typo must not quietly become a CPU slice.
    """
    kind, sep, index = name.strip().lower().partition(":")
    if kind == "cpu" and not sep:
        return "cpu", None
    if kind in ("cuda", "npu") and (not sep or index.isdigit()):
        return kind, int(index or 0)
    raise ValueError(f"unknown device {name!r}: use 'cpu', 'cuda:N' or 'npu:N'")


def canonical_device(name: str) -> str:
    """The one spelling of a device name (``"CUDA"`` -> ``"cuda:0"``)."""
    kind, index = parse_device(name)
    return kind if index is None else f"{kind}:{index}"


# --- CPU ---------------------------------------------------------------------------------------


def meminfo(path: Path = Path("/proc/meminfo")) -> dict[str, int]:
    """``/proc/meminfo`` in bytes (``MemTotal``, ``MemAvailable``...); empty if unreadable."""
    values: dict[str, int] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return values
    for line in lines:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            scale = 1024 if len(parts) > 1 and parts[1] == "kB" else 1
            values[key.strip()] = int(parts[0]) * scale
    return values


def _psutil_memory() -> tuple[int, int] | None:
    try:
        import psutil  # optional: not a dependency, used when a deployment installs it
    except ImportError:
        return None
    memory = psutil.virtual_memory()
    return int(memory.total), int(memory.available)


def _own_cgroup_dirs(
    proc_cgroup: Path = Path("/proc/self/cgroup"), mountinfo: Path = Path("/proc/self/mountinfo")
) -> dict[str, Path]:
    """This process's cgroup directory per controller (``"cpu"``, ``"memory"``; ``""`` is v2).

    Read from ``/proc/self/mountinfo`` (where each hierarchy is mounted) and
    ``/proc/self/cgroup`` (where in it this process is); empty when either is unreadable.
    """
    try:
        mounts = mountinfo.read_text().splitlines()
        membership = proc_cgroup.read_text().splitlines()
    except OSError:
        return {}
    roots: dict[str, tuple[str, Path]] = {}  # controller -> (root within hierarchy, mount point)
    for line in mounts:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        if tail[0] == "cgroup2":
            roots[""] = (fields[3], Path(fields[4]))
        elif tail[0] == "cgroup":
            for option in tail[2].split(","):
                if option in ("cpu", "memory", "cpuset", "cpuacct"):
                    roots[option] = (fields[3], Path(fields[4]))
    found: dict[str, Path] = {}
    for line in membership:
        _, _, rest = line.partition(":")
        controllers, _, where = rest.partition(":")
        names = controllers.split(",") if controllers else [""]
        for controller in names:
            if controller in roots:
                root, mount = roots[controller]
                relative = os.path.relpath(where, root) if where.startswith(root) else where
                found[controller] = (mount / relative.lstrip("/")).resolve()
    return found


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.lstrip("-").isdigit() else None


def cgroup_limits() -> tuple[float | None, int | None]:
    """The CPU quota (cores) and memory limit (bytes) the cgroups put on this process.

    cgroup v2 ``cpu.max`` / ``memory.max`` first, then v1 ``cpu.cfs_quota_us`` /
    ``memory.limit_in_bytes``; None where unlimited or unreadable. A v1 "limit" of about 2**63
    is the kernel's way of saying unlimited.
    """
    dirs = _own_cgroup_dirs()
    quota: float | None = None
    memory: int | None = None
    if "" in dirs:
        try:
            max_text = (dirs[""] / "cpu.max").read_text().split()
            if len(max_text) == 2 and max_text[0] != "max":
                quota = int(max_text[0]) / int(max_text[1])
        except (OSError, ValueError):
            pass
        memory = _read_int(dirs[""] / "memory.max")
    if quota is None and "cpu" in dirs:
        cfs_quota = _read_int(dirs["cpu"] / "cpu.cfs_quota_us")
        cfs_period = _read_int(dirs["cpu"] / "cpu.cfs_period_us")
        if cfs_quota and cfs_quota > 0 and cfs_period:
            quota = cfs_quota / cfs_period
    if memory is None and "memory" in dirs:
        memory = _read_int(dirs["memory"] / "memory.limit_in_bytes")
    if memory is not None and memory >= 2**62:
        memory = None
    return quota, memory


def cpu_info() -> DeviceInfo:
    """The CPU as one device: the cores this process may use and the memory it may take."""
    cores = tuple(sorted(os.sched_getaffinity(0)))
    quota, memory_limit = cgroup_limits()
    from_psutil = _psutil_memory()
    if from_psutil is not None:
        total, available = from_psutil
        source = "psutil"
    else:
        info = meminfo()
        total, available = info.get("MemTotal", 0), info.get("MemAvailable", 0)
        source = "/proc/meminfo"
    if memory_limit is not None:
        total, available = min(total, memory_limit), min(available, memory_limit)
    usable = len(cores) if quota is None else max(1, min(len(cores), math.ceil(quota)))
    return DeviceInfo(
        name="cpu",
        kind="cpu",
        index=None,
        model=_cpu_model() or platform.machine(),
        memory_bytes=total,
        memory_free_bytes=available,
        compute_units=usable,
        cores=cores,
        cpu_quota=quota,
        extra={"memory_source": source, "cgroup_memory_limit": memory_limit},
    )


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        return None
    return None


# --- accelerators ------------------------------------------------------------------------------


def _cuda_info(index: int) -> DeviceInfo:
    props = torch.cuda.get_device_properties(index)
    free: int | None
    try:
        free, _ = torch.cuda.mem_get_info(index)
    except RuntimeError:  # a device in exclusive-process mode held by another process
        free = None
    return DeviceInfo(
        name=f"cuda:{index}",
        kind="cuda",
        index=index,
        model=str(props.name),
        memory_bytes=int(props.total_memory),
        memory_free_bytes=free,
        compute_units=int(props.multi_processor_count),
        capability=f"{props.major}.{props.minor}",
        extra={"mps": mps_active()},
    )


def _npu_info(index: int) -> DeviceInfo:
    npu = torch.npu  # type: ignore[attr-defined]  # registered by torch_npu
    props = npu.get_device_properties(index)
    free: int | None = None
    try:
        free, _ = npu.mem_get_info(index)
    except Exception:  # older torch_npu builds lack mem_get_info
        free = None
    # torch_npu names the AI-core count differently across releases; 0 means "unknown".
    units = next(
        (
            int(getattr(props, attr))
            for attr in ("cube_core_num", "multi_processor_count", "aicore_num")
            if getattr(props, attr, None)
        ),
        0,
    )
    return DeviceInfo(
        name=f"npu:{index}",
        kind="npu",
        index=index,
        model=str(getattr(props, "name", "Ascend NPU")),
        memory_bytes=int(getattr(props, "total_memory", 0)),
        memory_free_bytes=free,
        compute_units=units,
    )


def mps_active(pipe_dir: str | None = None) -> bool:
    """Whether an NVIDIA MPS control daemon is running for this process's pipe directory.

    MPS is the only way a CUDA slice's compute share is enforced inside one GPU without MIG: the
    daemon creates ``control`` in ``CUDA_MPS_PIPE_DIRECTORY`` (``/tmp/nvidia-mps`` by default).
    """
    directory = Path(pipe_dir or os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps"))  # noqa: S108
    return (directory / "control").exists()


def discover_devices(include_cpu: bool = True) -> list[DeviceInfo]:
    """Every device this node can offer: accelerators first (CUDA, then NPU), the CPU last.

    An accelerator whose properties cannot be read is left out rather than offered blind.
    """
    found: list[DeviceInfo] = []
    for name in available_devices():
        kind, index = parse_device(name)
        if index is None:
            continue
        try:
            if kind == "cuda":
                found.append(_cuda_info(index))
            elif kind == "npu" and torch_npu_module() is not None:
                found.append(_npu_info(index))
        except (RuntimeError, AttributeError, AssertionError):
            continue
    if include_cpu:
        found.append(cpu_info())
    return found


def find_device(name: str, devices: list[DeviceInfo] | None = None) -> DeviceInfo:
    """The discovered device called ``name``; ``LookupError`` if this node does not have it."""
    wanted = canonical_device(name)
    for device in devices if devices is not None else discover_devices():
        if device.name == wanted:
            return device
    raise LookupError(f"this node has no device {wanted!r}")
