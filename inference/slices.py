"""Virtual slices: one device split by memory and compute share, each served by its own process.

Small inference replicas rarely fill a card, so a device is cut into slices (HAMi's memory and
core slicing, Run:ai's fractions, Flex:ai's vGPU in 5 % steps) and each slice is served by one
worker process. A slice is only worth its name if its limits hold, so everything the platform
offers is applied *inside the worker process* (``apply_slice``), and what the slice really got is
measured from the operating system (``ShareMeter``), never taken from the scheduler's own books:

=============  ============================================  ==================================
platform       compute share                                  memory
=============  ============================================  ==================================
CPU            ``sched_setaffinity`` to the slice's cores,    admission control in the batcher
               ``torch.set_num_threads``; a cgroup CPU        (a cgroup memory limit would have
               quota (v2 ``cpu.max``, v1 ``cfs_quota_us``)    the kernel kill the whole worker,
               where writable, for shares finer than a core   not fail one request)
CUDA           ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`` when     ``set_per_process_memory_fraction``
               MPS runs (else time-sliced by the driver:      (the caching allocator raises
               reported as not enforced)                      OutOfMemoryError past it)
Ascend NPU     not in-process (vNPU templates are set by      ``torch.npu.set_per_process_``
               ``npu-smi`` / HAMi outside the worker)         ``memory_fraction``
=============  ============================================  ==================================

Each step is reported (applied or not, and why), so the pool API can say which limits hold on
which node. Nothing here fails because a mechanism is missing: a slice on a laptop without
cgroup write access still serves, and says its quota is not enforced.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inference.devices import DeviceInfo, _own_cgroup_dirs, mps_active, parse_device

CGROUP_PERIOD_US = 100_000  # the kernel's default CFS period: 100 ms
_EPS = 1e-9


@dataclass(frozen=True)
class SliceSpec:
    """One virtual slice of a device.

    ``compute_share`` is a fraction of the whole device (0.25 of a 2-core CPU is half a core;
    0.25 of a GPU is a quarter of its SMs under MPS). ``memory_bytes`` is the slice's memory.
    ``cores`` are the CPU ids the slice's process is pinned to (CPU slices; empty otherwise).
    ``device_units`` is the device's compute units (cores, SMs) and ``device_memory_bytes`` its
    memory, so a worker can turn shares into absolute limits without rediscovering the device.
    """

    device: str
    index: int
    memory_bytes: int
    compute_share: float
    cores: tuple[int, ...] = ()
    device_units: int = 1
    device_memory_bytes: int = 0

    def __post_init__(self) -> None:
        parse_device(self.device)
        if not 0 < self.compute_share <= 1 + _EPS:
            raise ValueError(f"compute_share must be in (0, 1], got {self.compute_share}")
        if self.memory_bytes <= 0:
            raise ValueError(f"memory_bytes must be positive, got {self.memory_bytes}")

    @property
    def name(self) -> str:
        """``"cuda:0/1"``: the device and the slice's index on it."""
        return f"{self.device}/{self.index}"

    @property
    def kind(self) -> str:
        return parse_device(self.device)[0]

    @property
    def compute_units(self) -> float:
        """The share in the device's units: cores on a CPU (0.5 = half a core), SMs on a GPU."""
        return self.compute_share * self.device_units

    @property
    def threads(self) -> int:
        """Intra-op threads for the slice's runtime: one per pinned core (1 on accelerators,
        where host threads only feed the device)."""
        return max(1, len(self.cores)) if self.kind == "cpu" else 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: passed to worker processes and registered in Redis."""
        data = asdict(self)
        data["cores"] = list(self.cores)
        data["name"] = self.name
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SliceSpec:
        values = {k: v for k, v in data.items() if k != "name"}
        values["cores"] = tuple(values.get("cores") or ())
        return cls(**values)


def split_device(
    device: DeviceInfo,
    count: int | None = None,
    *,
    shares: Sequence[float] | None = None,
    memory: Sequence[int] | None = None,
    reserve_bytes: int = 0,
) -> list[SliceSpec]:
    """Cut ``device`` into ``count`` equal slices, or into the given compute ``shares``.

    Memory follows the compute share unless ``memory`` (bytes per slice) is given;
    ``reserve_bytes`` is kept back first (on CUDA each process's context, about 0.3-0.5 GiB, is
    outside the allocator's fraction). On a CPU the shares are laid side by side on the line of
    cores and each slice pinned to the cores its stretch covers: two slices of 2 cores get one
    core each, four get half a core each (two per core, held to half by the cgroup quota).
    """
    if (count is None) == (shares is None):
        raise ValueError("give either count or shares")
    if count is not None:
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        shares = [1.0 / count] * count
    shares = list(shares or ())
    if not shares or any(s <= 0 for s in shares) or sum(shares) > 1 + 1e-6:
        raise ValueError(f"shares must be positive and add up to at most 1, got {list(shares)}")
    pool = device.memory_bytes - reserve_bytes
    if memory is not None:
        if len(memory) != len(shares):
            raise ValueError("memory must give one size per slice")
        if sum(memory) > pool:
            raise ValueError(f"slices ask for {sum(memory)} bytes, {device.name} has {pool}")
        sizes = [int(m) for m in memory]
    else:
        sizes = [int(pool * s) for s in shares]
    units = max(1, device.compute_units)
    slices, start = [], 0.0
    for index, (share, size) in enumerate(zip(shares, sizes, strict=True)):
        cores: tuple[int, ...] = ()
        if device.kind == "cpu":
            ids = device.cores or tuple(range(units))
            end = start + share * len(ids)
            first, last = int(start + _EPS), max(int(start + _EPS), math.ceil(end - 1e-6) - 1)
            cores = tuple(ids[first : last + 1])
            start = end
        slices.append(
            SliceSpec(
                device=device.name,
                index=index,
                memory_bytes=size,
                compute_share=float(share),
                cores=cores,
                device_units=units,
                device_memory_bytes=device.memory_bytes,
            )
        )
    return slices


_PLAN_ITEM = re.compile(r"^\s*(?P<device>[a-z]+(:\d+)?)\s*=\s*(?P<what>[\d.,\s]+)$", re.I)


def parse_slice_plan(plan: str, devices: Sequence[DeviceInfo]) -> list[SliceSpec]:
    """Slices from a node's plan, e.g. ``"cpu=2; cuda:0=4; cuda:1=0.5,0.25,0.25"``.

    An integer cuts the device into that many equal slices, a list of fractions into those
    compute shares. This is the format of the ``HAULMIND_SLICES`` setting a worker node reads.
    """
    by_name = {d.name: d for d in devices}
    slices: list[SliceSpec] = []
    for item in filter(str.strip, plan.split(";")):
        match = _PLAN_ITEM.match(item)
        if match is None:
            raise ValueError(f"bad slice plan item {item!r}: use DEVICE=COUNT or DEVICE=S1,S2,..")
        name = match["device"].lower()
        name = name if ":" in name or name == "cpu" else f"{name}:0"
        if name not in by_name:
            raise ValueError(f"slice plan names {name!r}, this node has {sorted(by_name)}")
        what = match["what"].strip()
        if "," in what or "." in what:
            slices += split_device(by_name[name], shares=[float(x) for x in what.split(",")])
        else:
            slices += split_device(by_name[name], int(what))
    return slices


# --- enforcement -------------------------------------------------------------------------------


@dataclass
class EnforcementStep:
    """One limit: whether it holds in this process, and the detail (value set, or why not)."""

    mechanism: str
    applied: bool
    detail: str


@dataclass
class EnforcementReport:
    """What ``apply_slice`` managed in this worker process, for the pool API and the logs."""

    slice: SliceSpec
    pid: int
    steps: list[EnforcementStep] = field(default_factory=list)
    cgroup: str | None = None

    def add(self, mechanism: str, applied: bool, detail: str) -> None:
        self.steps.append(EnforcementStep(mechanism, applied, detail))

    def applied(self, mechanism: str) -> bool:
        return any(s.applied for s in self.steps if s.mechanism == mechanism)

    def to_dict(self) -> dict[str, Any]:
        return {
            "slice": self.slice.to_dict(),
            "pid": self.pid,
            "cgroup": self.cgroup,
            "steps": [asdict(s) for s in self.steps],
        }


@dataclass(frozen=True)
class CgroupLocation:
    """Where this process may create a child cgroup with a CPU quota: ``version`` 1 or 2."""

    version: int
    parent: Path


def find_cpu_cgroup(root: Path | str | None = None) -> CgroupLocation | str:
    """A writable cgroup under which a slice's CPU quota can be set, or the reason there is none.

    ``root`` (or ``HAULMIND_CGROUP_ROOT``): a directory delegated to the node (systemd
    ``Delegate=yes``, a Kubernetes pod's cgroup). Without one, this process's own cgroup. On v2
    the cpu controller must be enabled for children (``cgroup.subtree_control``); the kernel
    refuses to enable it in a cgroup that holds processes, which is why a delegated, empty root
    is the reliable set-up. On v1 the cpu hierarchy's own directory is used.
    """
    root = root or os.environ.get("HAULMIND_CGROUP_ROOT")
    if root:
        parent = Path(root)
        version = 2 if (parent / "cgroup.controllers").exists() else 1
        candidates = [(version, parent)]
    else:
        dirs = _own_cgroup_dirs()
        candidates = [(2, dirs[""])] if "" in dirs else []
        if "cpu" in dirs:
            candidates.append((1, dirs["cpu"]))
    reasons = []
    for version, parent in candidates:
        if version == 2:
            try:
                enabled = (parent / "cgroup.subtree_control").read_text().split()
                available = (parent / "cgroup.controllers").read_text().split()
            except OSError as exc:
                reasons.append(f"v2 {parent}: {exc.strerror or exc}")
                continue
            if "cpu" not in enabled:
                if "cpu" not in available:
                    reasons.append(f"v2 {parent}: cpu controller not available")
                    continue
                try:
                    (parent / "cgroup.subtree_control").write_text("+cpu")
                except OSError as exc:
                    reasons.append(f"v2 {parent}: cannot enable cpu for children ({exc.strerror})")
                    continue
        elif not (parent / "cpu.cfs_quota_us").exists():
            reasons.append(f"v1 {parent}: no cpu.cfs_quota_us")
            continue
        if not os.access(parent, os.W_OK):
            reasons.append(f"v{version} {parent}: not writable")
            continue
        return CgroupLocation(version, parent)
    return "; ".join(reasons) or "no cgroup cpu hierarchy mounted"


def place_in_cpu_quota(
    location: CgroupLocation,
    name: str,
    cores: float,
    pid: int,
    period_us: int = CGROUP_PERIOD_US,
) -> Path:
    """Create the child cgroup ``name``, cap it at ``cores`` of CPU time, and move ``pid`` in.

    The quota is CPU time per period summed over all the process's threads: 0.5 cores is
    50 ms per 100 ms period. Raises ``OSError`` when the kernel refuses (the caller reports it).
    """
    quota_us = max(1000, round(cores * period_us))  # the kernel's minimum quota is 1 ms
    group = location.parent / name
    group.mkdir(exist_ok=True)
    if location.version == 2:
        (group / "cpu.max").write_text(f"{quota_us} {period_us}")
    else:
        (group / "cpu.cfs_period_us").write_text(str(period_us))
        (group / "cpu.cfs_quota_us").write_text(str(quota_us))
    (group / "cgroup.procs").write_text(str(pid))
    return group


def remove_cgroup(path: Path | str) -> bool:
    """Remove a slice's cgroup once its process has exited (the kernel refuses while it has
    members); True if it is gone."""
    with contextlib.suppress(OSError):
        Path(path).rmdir()
    return not Path(path).exists()


def remove_stale_cgroups(parent: Path) -> list[Path]:
    """Remove slice cgroups left by workers that have exited (a process cannot remove its own
    group, and a killed one cannot clean up); returns those removed."""
    removed = []
    for group in parent.glob("haulmind-*-*"):
        pid = group.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists() and remove_cgroup(group):
            removed.append(group)
    return removed


def cgroup_name(spec: SliceSpec, pid: int) -> str:
    """``haulmind-cpu-0-4242``: unique per process, so a crashed worker's group never clashes."""
    return "haulmind-" + re.sub(r"[^a-z0-9]+", "-", spec.name.lower()) + f"-{pid}"


def apply_slice(
    spec: SliceSpec,
    *,
    cgroup: bool | Path | str = True,
    set_env: bool = True,
) -> EnforcementReport:
    """Apply the slice's limits to *this* process; call it first thing in the worker process.

    ``cgroup``: True to look for a writable cgroup (``find_cpu_cgroup``), a path to use that
    delegated root, False to skip. Order matters on CUDA: the MPS thread percentage is read
    when the CUDA context is created, so it is set before anything touches the GPU.
    """
    import torch

    report = EnforcementReport(spec, os.getpid())
    kind, index = parse_device(spec.device)
    if kind == "cpu":
        _apply_cpu(spec, report, set_env)
    else:
        # Host threads only feed the device: one intra-op thread per accelerator worker keeps
        # many slices on one node from fighting over its cores.
        torch.set_num_threads(1)
    if kind == "cuda":
        _apply_cuda(spec, index or 0, report)
    elif kind == "npu":
        _apply_npu(spec, index or 0, report)
    needs_quota = kind == "cpu" and spec.compute_units < len(spec.cores) - _EPS
    if cgroup is False:
        report.add("cgroup_cpu_quota", False, "disabled")
    else:
        root = None if cgroup is True else Path(cgroup)
        location = find_cpu_cgroup(root)
        if isinstance(location, str):
            note = "" if needs_quota else " (affinity alone holds this share)"
            report.add("cgroup_cpu_quota", False, location + note)
        elif kind == "cpu":
            remove_stale_cgroups(location.parent)
            try:
                group = place_in_cpu_quota(
                    location, cgroup_name(spec, report.pid), spec.compute_units, report.pid
                )
            except OSError as exc:
                report.add("cgroup_cpu_quota", False, f"{location.parent}: {exc.strerror or exc}")
            else:
                report.cgroup = str(group)
                report.add(
                    "cgroup_cpu_quota",
                    True,
                    f"v{location.version} {group}: {spec.compute_units:.3g} cores",
                )
        else:
            report.add("cgroup_cpu_quota", False, "accelerator slice: host CPU not capped")
    return report


def _apply_cpu(spec: SliceSpec, report: EnforcementReport, set_env: bool) -> None:
    import torch

    cores = set(spec.cores) or set(os.sched_getaffinity(0))
    try:
        os.sched_setaffinity(0, cores)
        report.add("cpu_affinity", True, f"cores {sorted(cores)}")
    except OSError as exc:
        report.add("cpu_affinity", False, f"cores {sorted(cores)}: {exc.strerror or exc}")
    threads = spec.threads
    torch.set_num_threads(threads)
    report.add("torch_threads", torch.get_num_threads() == threads, f"{threads} intra-op")
    # Only settable before the first parallel region; fine either way.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    if set_env:
        # Read at load time by OpenMP / MKL / onnxruntime sessions created after this point.
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(threads)
        report.add("thread_env", True, f"OMP/MKL/OPENBLAS_NUM_THREADS={threads}")


def _cuda_initialized() -> bool:
    import torch

    return bool(torch.cuda.is_initialized())


def _apply_cuda(spec: SliceSpec, index: int, report: EnforcementReport) -> None:
    import torch

    percentage = max(1, math.ceil(spec.compute_share * 100 - _EPS))
    if not mps_active():
        report.add(
            "mps_thread_percentage",
            False,
            "MPS not running: the driver time-slices contexts, the compute share is not capped",
        )
    elif _cuda_initialized():
        report.add(
            "mps_thread_percentage",
            False,
            "CUDA already initialised in this process: set before any CUDA call",
        )
    else:
        os.environ["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(percentage)
        report.add("mps_thread_percentage", True, f"{percentage} %")
    if not torch.cuda.is_available() or index >= torch.cuda.device_count():
        report.add("memory_fraction", False, f"{spec.device} not visible to this process")
        return
    total = spec.device_memory_bytes or torch.cuda.get_device_properties(index).total_memory
    fraction = min(1.0, spec.memory_bytes / total)
    torch.cuda.set_device(index)
    torch.cuda.set_per_process_memory_fraction(fraction, index)
    report.add("memory_fraction", True, f"{fraction:.4f} of {total} bytes")


def _apply_npu(spec: SliceSpec, index: int, report: EnforcementReport) -> None:
    import torch

    from models.devices import torch_npu_module

    report.add(
        "npu_compute_share",
        False,
        "set outside the worker (vNPU template via npu-smi / HAMi); time-sliced otherwise",
    )
    npu = getattr(torch, "npu", None) if torch_npu_module() is not None else None
    if npu is None or not hasattr(npu, "set_per_process_memory_fraction"):
        report.add("memory_fraction", False, "torch_npu not importable here")
        return
    total = spec.device_memory_bytes or npu.get_device_properties(index).total_memory
    fraction = min(1.0, spec.memory_bytes / total)
    npu.set_device(index)
    npu.set_per_process_memory_fraction(fraction, index)
    report.add("memory_fraction", True, f"{fraction:.4f} of {total} bytes")


# --- what the slice really gets ----------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (all its threads), from the kernel.

    ``None``: this process (``os.times``). Another pid: ``/proc/<pid>/stat`` fields 14 and 15,
    so the pool can measure a worker from outside without trusting its own numbers.
    """
    if pid is None or pid == os.getpid():
        t = os.times()
        return t.user + t.system
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / _TICKS


def process_rss_bytes(pid: int | None = None) -> int:
    """Resident memory of a process (``/proc/<pid>/statm``), 0 if it has gone."""
    try:
        pages = Path(f"/proc/{pid or 'self'}/statm").read_text().split()[1]
    except (OSError, IndexError):
        return 0
    return int(pages) * os.sysconf("SC_PAGE_SIZE")


def nvml_process_busy(index: int, pid: int, since_us: int = 0) -> float | None:
    """The SM utilisation (0-1) NVML saw for ``pid`` on GPU ``index``, None without pynvml.

    NVML samples per-process SM activity in the driver; it is the GPU's counterpart of
    ``/proc/<pid>/stat``. Optional: used when ``pynvml`` (nvidia-ml-py) is installed.
    """
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        samples = pynvml.nvmlDeviceGetProcessUtilization(handle, since_us)
    except Exception:  # no samples yet, or a driver without per-process accounting
        return None
    mine = [s.smUtil for s in samples if s.pid == pid]
    return sum(mine) / len(mine) / 100.0 if mine else 0.0


@dataclass(frozen=True)
class ShareSample:
    """Configured against delivered compute share over one interval.

    ``delivered_share``: fraction of the whole device this slice's process used;
    ``of_allocation``: that over the configured share (above 1: the limit did not hold; well
    below 1 under load: the slice is starved). ``source`` says how it was measured.
    """

    slice: str
    configured_share: float
    delivered_share: float
    of_allocation: float
    wall_s: float
    busy_s: float
    source: str
    memory_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ShareMeter:
    """Measures the compute share a slice's process really gets, between two ``sample`` calls.

    CPU: the process's CPU seconds (kernel accounting) over wall time and the device's cores.
    CUDA: NVML's per-process SM utilisation when pynvml is installed, else the busy seconds the
    caller measured around its forward passes (the batcher's compute time, synchronised).
    """

    def __init__(self, spec: SliceSpec, pid: int | None = None) -> None:
        self.spec, self.pid = spec, pid
        self._wall = time.monotonic()
        self._cpu = process_cpu_seconds(pid)
        self._busy_total = 0.0

    def sample(self, busy_seconds_total: float | None = None) -> ShareSample:
        """The share since the last sample. ``busy_seconds_total``: a running total of
        accelerator busy time, used on accelerators when NVML is not available."""
        now, cpu = time.monotonic(), process_cpu_seconds(self.pid)
        wall = max(now - self._wall, 1e-9)
        kind, index = parse_device(self.spec.device)
        if kind == "cpu":
            busy = cpu - self._cpu
            delivered = busy / (wall * max(1, self.spec.device_units))
            source = "/proc/stat" if self.pid not in (None, os.getpid()) else "os.times"
        else:
            nvml = (
                nvml_process_busy(index or 0, self.pid or os.getpid()) if kind == "cuda" else None
            )
            if nvml is not None:
                delivered, busy, source = nvml, nvml * wall, "nvml"
            else:
                total = busy_seconds_total or 0.0
                busy = max(0.0, total - self._busy_total)
                self._busy_total = total
                delivered, source = busy / wall, "busy_time"
        self._wall, self._cpu = now, cpu
        return ShareSample(
            slice=self.spec.name,
            configured_share=self.spec.compute_share,
            delivered_share=delivered,
            of_allocation=delivered / self.spec.compute_share,
            wall_s=wall,
            busy_s=busy,
            source=source,
            memory_bytes=_slice_memory(self.spec, self.pid),
        )


def _slice_memory(spec: SliceSpec, pid: int | None) -> int:
    kind, index = parse_device(spec.device)
    if kind == "cuda" and pid in (None, os.getpid()):
        import torch

        if torch.cuda.is_initialized():
            return int(torch.cuda.memory_reserved(index))
    return process_rss_bytes(pid)


# --- out of memory -----------------------------------------------------------------------------


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a device or host allocation failure (CUDA, NPU, onnxruntime, CPU)."""
    import torch

    if isinstance(exc, MemoryError | torch.OutOfMemoryError):
        return True
    # torch_npu and onnxruntime raise their own exception types; their messages agree.
    text = str(exc).lower()
    return "out of memory" in text or "failed to allocate memory" in text


def release_memory(device: str) -> None:
    """Hand cached blocks back after an out-of-memory, so the retry starts from a clean pool."""
    import torch

    kind, _ = parse_device(device)
    if kind == "cuda" and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    elif kind == "npu" and hasattr(torch, "npu"):
        torch.npu.empty_cache()


# --- a worker process per slice ----------------------------------------------------------------


def _slice_main(
    spec_dict: dict[str, Any],
    cgroup: bool | str,
    target: Callable[..., Any],
    args: tuple[Any, ...],
    channel: Any,
) -> None:
    spec = SliceSpec.from_dict(spec_dict)
    report = apply_slice(spec, cgroup=cgroup)
    channel.put(("report", report.to_dict()))
    try:
        result = target(spec, report, *args)
    except BaseException as exc:  # handed to the parent, which decides what it means
        channel.put(("error", repr(exc)))
        raise
    channel.put(("result", result))


class SliceProcess:
    """A worker process serving one slice: started with ``spawn`` (never fork a process that
    may have touched CUDA), its limits applied first thing, then ``target(spec, report, *args)``.

    The parent measures the child's delivered share from ``/proc`` (``meter``) and removes its
    cgroup when it has exited (``join``).
    """

    def __init__(
        self,
        spec: SliceSpec,
        target: Callable[..., Any],
        *args: Any,
        cgroup: bool | str = True,
    ) -> None:
        ctx = mp.get_context("spawn")
        self.spec = spec
        self._channel = ctx.Queue()
        self._process = ctx.Process(
            target=_slice_main,
            args=(spec.to_dict(), cgroup, target, args, self._channel),
            name=f"slice-{spec.name}",
            daemon=True,
        )
        self._process.start()
        self.report: dict[str, Any] | None = None
        self.meter: ShareMeter | None = None

    @property
    def pid(self) -> int:
        if self._process.pid is None:
            raise RuntimeError(f"slice {self.spec.name}: worker process not started")
        return self._process.pid

    def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        """Block until the child has applied its limits; returns its enforcement report and
        starts measuring its share from this moment."""
        kind, payload = self._channel.get(timeout=timeout)
        if kind != "report":
            raise RuntimeError(f"slice {self.spec.name} failed before reporting: {payload}")
        self.report = payload
        self.meter = ShareMeter(self.spec, pid=self.pid)
        return payload

    def result(self, timeout: float = 60.0) -> Any:
        """The target's return value (``RuntimeError`` with its repr if it raised)."""
        kind, payload = self._channel.get(timeout=timeout)
        if kind == "error":
            raise RuntimeError(f"slice {self.spec.name}: {payload}")
        return payload

    def join(self, timeout: float | None = 30.0) -> int | None:
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
        if self.report and self.report.get("cgroup"):
            remove_cgroup(self.report["cgroup"])
        return self._process.exitcode
