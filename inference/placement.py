"""Placement: which deployment's replicas run on which slice, decided once per scheduler tick.

This module is the cluster scheduler's policy and nothing else: it takes what the nodes
reported (``NodeView`` / ``SliceView``), what should run (``Deployment``) and how much work is
waiting (``Load``), and returns a ``Plan`` (slice -> deployments to serve). No Redis, no
processes and no clock: ``now`` is passed in, so a tick is a pure, deterministic function of
its inputs and of the little state ``Scheduler`` keeps between ticks.

Why it works this way:

- Guaranteed replicas first. Every deployment gets ``min_replicas`` *base* replicas, each
  reserving ``compute_share`` of its device. Latency-critical work is placed before best-effort
  work and gets a slice of its own, so a noisy neighbour cannot eat its SLO; when no empty
  slice is left it *preempts* best-effort replicas, choosing the slice whose evicted work has
  replicas elsewhere. Best-effort work that finds no free reserve is time-sliced on the least
  reserved slice (overcommit) rather than left unserved.
- Idle capacity is lent, and taken back. A slice whose owners have nothing queued and that is
  mostly idle is lent to a deployment whose queue is growing (Run:ai's over-quota pool, Flex:ai
  and Gandiva's time-slicing of idle accelerators). A borrowed replica reserves nothing: the
  moment an owner's queue builds up, or its p99 passes its SLO, the loan ends on the next tick.
  Critical slices are never lent and critical work never borrows.
- Scale on queue depth, not on utilisation: ``queued + in_flight`` per replica above
  ``backlog_per_replica`` adds replicas (a few per tick, up to ``max_replicas``, never more than
  the backlog justifies); after ``scale_down_after_s`` with no backlog the extra replicas go back
  one per tick, the most recent first, so a burst does not make replicas flap.
- Stability: a replica stays on its slice while that slice can still hold it. Nothing is
  reshuffled to improve a score; a worker that restarts loses its loaded model and its batches.
- Failure: slices of a node that stopped reporting vanish; a draining node keeps its slices in
  the plan with nothing assigned, so its workers stop consuming; base replicas from both are
  re-placed in the same tick.

A plan's ``replicas`` lists each deployment's base replicas first, then its extra ones in the
order they were added. ``Scheduler.restore`` relies on that after a restart: the first
``min_replicas`` count as base, the rest as extra (reserved where their slice has room for them,
borrowed otherwise), and every deployment is treated as busy at its first tick.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

PRIORITIES = ("critical", "best-effort")
STRATEGIES = ("spread", "binpack")

EPS = 1e-9
MIB = 1 << 20
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]*")

# Kinds of replica in the scheduler's own state (never in a Plan: see the module docstring).
BASE, SCALED, BORROWED = "base", "scaled", "borrowed"


def _mib(n: float) -> str:
    return f"{n / MIB:.0f}"


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """The mapping as keyword arguments for ``cls``, refusing fields it does not have."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
    return dict(data)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True)
class Deployment:
    """One model version served from a queue of its own, with what a replica needs."""

    name: str
    checkpoint: str
    model: str = ""
    model_id: str = ""
    memory_bytes: int = 0
    compute_share: float = 0.25
    slo_ms: float = 500.0
    priority: str = "best-effort"
    strategy: str = "spread"
    min_replicas: int = 1
    max_replicas: int = 8
    device_kinds: tuple[str, ...] = ("cuda", "npu", "cpu")
    batching: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        name = self.name
        _check(
            isinstance(name, str) and _NAME.fullmatch(name) is not None,
            f"deployment name {name!r} must match {_NAME.pattern} (it is the queue's suffix)",
        )
        _check(
            isinstance(self.checkpoint, str) and bool(self.checkpoint),
            f"deployment {name}: checkpoint is required",
        )
        _check(
            isinstance(self.memory_bytes, int) and self.memory_bytes >= 0,
            f"deployment {name}: memory_bytes must be an integer >= 0, not {self.memory_bytes!r}",
        )
        _check(
            0 < self.compute_share <= 1,
            f"deployment {name}: compute_share must be in (0, 1], not {self.compute_share!r}",
        )
        _check(self.slo_ms > 0, f"deployment {name}: slo_ms must be > 0, not {self.slo_ms!r}")
        _check(
            self.priority in PRIORITIES,
            f"deployment {name}: priority must be one of {PRIORITIES}, not {self.priority!r}",
        )
        _check(
            self.strategy in STRATEGIES,
            f"deployment {name}: strategy must be one of {STRATEGIES}, not {self.strategy!r}",
        )
        _check(
            isinstance(self.min_replicas, int)
            and isinstance(self.max_replicas, int)
            and 0 <= self.min_replicas <= self.max_replicas,
            f"deployment {name}: need 0 <= min_replicas <= max_replicas, "
            f"not {self.min_replicas!r} and {self.max_replicas!r}",
        )
        kinds = self.device_kinds
        _check(
            not isinstance(kinds, str) and len(tuple(kinds)) > 0,
            f"deployment {name}: device_kinds must be a non-empty list of kinds, not {kinds!r}",
        )
        _check(
            isinstance(self.batching, Mapping),
            f"deployment {name}: batching must be a mapping (BatchingConfig.to_dict() form)",
        )
        # Lists arrive from JSON; a frozen dataclass still has to hold immutable tuples.
        object.__setattr__(self, "device_kinds", tuple(kinds))
        object.__setattr__(self, "batching", dict(self.batching))

    @property
    def critical(self) -> bool:
        return self.priority == "critical"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["device_kinds"] = list(self.device_kinds)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Deployment:
        return cls(**_known(cls, data))


@dataclass(frozen=True)
class SliceView:
    """What a node reported of one of its slices at its last heartbeat."""

    node: str
    name: str
    device: str
    kind: str
    compute_share: float
    memory_bytes: int
    busy: float = 0.0
    serving: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # The key is "node/slice" and the slice's own name holds slashes ("cpu/0"), so the node
        # name must not: that keeps a key readable back into its node after a restart.
        _check(
            isinstance(self.node, str) and bool(self.node) and "/" not in self.node,
            f"slice node {self.node!r} must be a non-empty name without '/'",
        )
        _check(bool(self.name), f"slice on {self.node}: name is required")
        _check(
            0 < self.compute_share <= 1,
            f"slice {self.key}: compute_share must be in (0, 1], not {self.compute_share!r}",
        )
        _check(self.memory_bytes >= 0, f"slice {self.key}: memory_bytes must be >= 0")
        _check(self.busy >= 0, f"slice {self.key}: busy must be >= 0, not {self.busy!r}")
        object.__setattr__(self, "serving", tuple(self.serving))

    @property
    def key(self) -> str:
        return f"{self.node}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["serving"] = list(self.serving)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SliceView:
        return cls(**_known(cls, data))


@dataclass(frozen=True)
class NodeView:
    """A live node and its slices; a draining node gets no work and keeps its slices listed."""

    name: str
    slices: tuple[SliceView, ...]
    draining: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "slices", tuple(self.slices))
        for s in self.slices:
            _check(s.node == self.name, f"node {self.name}: slice {s.key} belongs to {s.node}")
        names = [s.name for s in self.slices]
        _check(len(set(names)) == len(names), f"node {self.name}: slice names repeat: {names}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "slices": [s.to_dict() for s in self.slices],
            "draining": self.draining,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeView:
        data = _known(cls, data)
        data["slices"] = tuple(SliceView.from_dict(s) for s in data.get("slices", ()))
        return cls(**data)


@dataclass(frozen=True)
class Load:
    """One deployment's demand as the caller measured it (broker queue plus replicas)."""

    queued: int = 0
    in_flight: int = 0
    arrival_per_s: float = 0.0
    served_per_s: float = 0.0
    p99_ms: float | None = None

    def __post_init__(self) -> None:
        _check(self.queued >= 0 and self.in_flight >= 0, "load: queued and in_flight >= 0")

    @property
    def backlog(self) -> int:
        return self.queued + self.in_flight

    @property
    def idle(self) -> bool:
        # One request held by a replica is the trickle of a quiet deployment, not a backlog.
        return self.queued == 0 and self.in_flight <= 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Load:
        return cls(**_known(cls, data))


@dataclass(frozen=True)
class Policy:
    """Tunables; the defaults suit ticks about a second apart."""

    backlog_per_replica: int = 16
    scale_up_step: int = 3
    scale_down_after_s: float = 3.0
    idle_busy: float = 0.5
    share_critical: bool = False

    def __post_init__(self) -> None:
        _check(self.backlog_per_replica >= 1, "policy: backlog_per_replica must be >= 1")
        _check(self.scale_up_step >= 1, "policy: scale_up_step must be >= 1")
        _check(self.scale_down_after_s >= 0, "policy: scale_down_after_s must be >= 0")
        _check(0 <= self.idle_busy <= 1, "policy: idle_busy must be in [0, 1]")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        return cls(**_known(cls, data))


@dataclass(frozen=True)
class Plan:
    """The outcome of one tick: what every live slice serves and why it changed."""

    assignment: dict[str, tuple[str, ...]] = field(hash=False)
    replicas: dict[str, tuple[str, ...]] = field(hash=False)
    unplaced: dict[str, str] = field(default_factory=dict, hash=False)
    decisions: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "assignment": {k: list(v) for k, v in self.assignment.items()},
            "replicas": {k: list(v) for k, v in self.replicas.items()},
            "unplaced": dict(self.unplaced),
            "decisions": list(self.decisions),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        data = _known(cls, data)
        return cls(
            assignment={k: tuple(v) for k, v in data.get("assignment", {}).items()},
            replicas={k: tuple(v) for k, v in data.get("replicas", {}).items()},
            unplaced=dict(data.get("unplaced", {})),
            decisions=tuple(data.get("decisions", ())),
        )

    def routes(self, deployments: Iterable[Deployment]) -> dict[str, dict[str, Any]]:
        """The routing table for producers: queue and model of every deployment being served."""
        table: dict[str, dict[str, Any]] = {}
        for d in sorted(deployments, key=lambda d: d.name):
            keys = self.replicas.get(d.name, ())
            if keys:
                table[d.name] = {
                    "queue": f"inference.{d.name}",
                    "model": d.model,
                    "model_id": d.model_id,
                    "replicas": list(keys),
                }
        return table


@dataclass(eq=False)  # identity, not field equality: replicas are tracked as objects
class _Replica:
    deployment: str
    slice: str
    kind: str  # BASE, SCALED, BORROWED; "" when read back from a plan, settled at the next tick
    seq: int  # order of addition, for "the most recently added goes first"


# Why a slice cannot host a deployment, as codes (counted for ``unplaced``) and as words.
_REASONS = {
    "draining": "on a draining node",
    "kind": "of another device kind",
    "serving": "already serving it",
    "memory": "without {mib} MiB free",
    "own-slice": "not empty (critical work needs a slice of its own)",
    "critical": "held by critical work",
    "share": "smaller than its compute share of {share:.2f}",
}


def _words(code: str, d: Deployment) -> str:
    return _REASONS[code].format(mib=_mib(d.memory_bytes), share=d.compute_share)


class _Board:
    """One tick's working state: the live slices and the replicas on them."""

    def __init__(
        self, nodes: Sequence[NodeView], deployments: Sequence[Deployment], policy: Policy
    ) -> None:
        self.policy = policy
        self.slices: dict[str, SliceView] = {}
        self.node_of: dict[str, str] = {}
        self.draining: set[str] = set()
        node_names = [n.name for n in nodes]
        _check(len(set(node_names)) == len(node_names), f"node names repeat: {node_names}")
        for node in nodes:
            if node.draining:
                self.draining.add(node.name)
            for s in node.slices:
                self.slices[s.key] = s
                self.node_of[s.key] = node.name
        names = [d.name for d in deployments]
        _check(len(set(names)) == len(names), f"deployment names repeat: {sorted(names)}")
        self.deployments = {d.name: d for d in deployments}
        self.on: dict[str, list[_Replica]] = {key: [] for key in self.slices}
        self.of: dict[str, list[_Replica]] = {name: [] for name in self.deployments}

    def add(self, r: _Replica) -> None:
        self.on[r.slice].append(r)
        self.of[r.deployment].append(r)

    def remove(self, r: _Replica) -> None:
        self.on[r.slice].remove(r)
        self.of[r.deployment].remove(r)

    def dep(self, r: _Replica) -> Deployment:
        return self.deployments[r.deployment]

    def others(self, key: str, without: Sequence[_Replica] = ()) -> list[_Replica]:
        return [r for r in self.on[key] if not any(r is w for w in without)]

    def reserved(self, key: str, without: Sequence[_Replica] = ()) -> float:
        # Borrowed replicas reserve nothing: they run on time the owners are not using.
        return sum(
            self.dep(r).compute_share for r in self.others(key, without) if r.kind != BORROWED
        )

    def fits_reserve(self, d: Deployment, key: str, without: Sequence[_Replica] = ()) -> bool:
        cap = self.slices[key].compute_share
        return self.reserved(key, without) + d.compute_share <= cap + EPS

    def critical_on(self, key: str) -> bool:
        return any(self.dep(r).critical for r in self.on[key])

    def on_node(self, d: Deployment, node: str) -> int:
        return sum(1 for r in self.of[d.name] if self.node_of[r.slice] == node)

    def node_reserved(self, node: str) -> float:
        return sum(self.reserved(k) for k, n in self.node_of.items() if n == node)

    def why_not(self, d: Deployment, key: str, without: Sequence[_Replica] = ()) -> str | None:
        """A reason code if ``d`` cannot run on ``key`` (reserve aside), else None."""
        s = self.slices[key]
        if self.node_of[key] in self.draining:
            return "draining"
        if s.kind not in d.device_kinds:
            return "kind"
        others = self.others(key, without)
        if any(r.deployment == d.name for r in others):
            return "serving"
        if sum(self.dep(r).memory_bytes for r in others) + d.memory_bytes > s.memory_bytes:
            return "memory"
        if not self.policy.share_critical:
            if d.critical and others:
                return "own-slice"
            if any(self.dep(r).critical for r in others):
                return "critical"
        return None

    def pick(self, d: Deployment, keys: Sequence[str]) -> str:
        """The strategy's choice among slices that can all take a reserved replica of ``d``."""
        if d.strategy == "binpack":
            # Least free reserve that still fits: fill one slice, then one node, before the next.
            return min(keys, key=lambda k: (round(self.free(k), 9), k))
        # Spread: away from this deployment's other replicas, then onto the least loaded node
        # (and slice within it), so one node's failure takes as little of it as possible.
        return min(
            keys,
            key=lambda k: (
                self.on_node(d, self.node_of[k]),
                round(self.node_reserved(self.node_of[k]), 9),
                round(self.reserved(k), 9),
                k,
            ),
        )

    def free(self, key: str) -> float:
        return self.slices[key].compute_share - self.reserved(key)


class _Tick:
    """One call of ``Scheduler.plan``: the steps in order, each a short method."""

    def __init__(
        self,
        board: _Board,
        loads: Mapping[str, Load],
        now: float,
        last_busy: dict[str, float],
        seq: int,
    ) -> None:
        self.board = board
        self.policy = board.policy
        self.loads = loads
        self.now = now
        self.last_busy = last_busy
        self.seq = seq
        self.log: list[str] = []
        self.displaced: dict[str, list[str]] = {}  # deployment -> why a base replica moved
        self.order = sorted(board.deployments.values(), key=lambda d: (not d.critical, d.name))

    def load(self, d: Deployment | str) -> Load:
        return self.loads.get(d if isinstance(d, str) else d.name) or Load()

    def new(self, d: Deployment, key: str, kind: str) -> _Replica:
        r = _Replica(d.name, key, kind, self.seq)
        self.seq += 1
        self.board.add(r)
        return r

    # -- 1. what stays from the previous plan --------------------------------------------------

    def keep(self, previous: Sequence[_Replica], slice_node: Mapping[str, str]) -> None:
        b = self.board
        gone = Counter(r.deployment for r in previous if r.deployment not in b.deployments)
        for name, n in sorted(gone.items()):
            self.log.append(f"{name} is no longer deployed: {n} replica(s) stopped")
        extras: list[_Replica] = []
        # Base replicas of every deployment before any extra one, critical work first, so a
        # conflict (memory, isolation) is always settled in favour of the guaranteed replica.
        for d in self.order:
            bases = 0
            mine = [r for r in previous if r.deployment == d.name]
            for i, old in enumerate(mine):
                kind = old.kind or (BASE if i < d.min_replicas else "")
                r = _Replica(d.name, old.slice, kind, old.seq)
                if kind == BASE and bases < d.min_replicas:
                    bases += self.keep_one(d, r, slice_node)
                else:
                    r.kind = "" if kind == BASE else kind  # above a lowered min: an extra now
                    extras.append(r)
        for r in sorted(extras, key=lambda r: r.seq):
            d = b.deployments[r.deployment]
            if len(b.of[d.name]) >= d.max_replicas:
                self.log.append(
                    f"{d.name}: -1 replica on {r.slice} (max_replicas {d.max_replicas})"
                )
            else:
                self.keep_one(d, r, slice_node)

    def keep_one(self, d: Deployment, r: _Replica, slice_node: Mapping[str, str]) -> bool:
        b = self.board
        key = r.slice
        if key not in b.slices:
            node = slice_node.get(key) or key.partition("/")[0]
            return self.displace(d, r, f"{node} is gone")
        if b.node_of[key] in b.draining:
            return self.displace(d, r, f"{b.node_of[key]} is draining")
        why = b.why_not(d, key)
        if why is not None:
            return self.displace(d, r, f"{key} no longer suits {d.name} ({_words(why, d)})")
        if not r.kind:
            r.kind = SCALED if b.fits_reserve(d, key) else BORROWED
        b.add(r)
        return True

    def displace(self, d: Deployment, r: _Replica, head: str) -> bool:
        if r.kind == BASE:
            # Said once the replica has found its new place (or failed to), in place_bases.
            self.displaced.setdefault(d.name, []).append(head)
        else:
            self.log.append(f"{head}: {d.name}'s extra replica on {r.slice} stopped")
        return False

    # -- 2. the loads, 3. loans taken back, 4. scale down --------------------------------------

    def note_loads(self) -> None:
        for d in self.order:
            if not self.load(d).idle or d.name not in self.last_busy:
                self.last_busy[d.name] = self.now
        for name in list(self.last_busy):
            if name not in self.board.deployments:
                del self.last_busy[name]

    def pressed(self, d: Deployment) -> str | None:
        """Why ``d`` needs its own slices back now, if it does."""
        load = self.load(d)
        if load.backlog > self.policy.backlog_per_replica:
            return f"backlog {load.backlog} > {self.policy.backlog_per_replica}"
        if load.p99_ms is not None and load.p99_ms > d.slo_ms:
            return f"p99 {load.p99_ms:.0f} ms > SLO {d.slo_ms:.0f} ms"
        return None

    def take_back(self) -> None:
        b = self.board
        for key in sorted(b.on):
            for r in [r for r in b.on[key] if r.kind == BORROWED]:
                owners = sorted({o.deployment for o in b.on[key] if o.kind != BORROWED})
                for owner in owners:
                    why = self.pressed(b.deployments[owner])
                    if why:
                        b.remove(r)
                        self.log.append(
                            f"{owner} needs {key} back ({why}): "
                            f"{r.deployment}'s borrowed replica taken back"
                        )
                        break

    def scale_down(self) -> None:
        for d in self.order:
            extras = [r for r in self.board.of[d.name] if r.kind != BASE]
            quiet_for = self.now - self.last_busy[d.name]
            if extras and self.load(d).idle and quiet_for >= self.policy.scale_down_after_s:
                r = max(extras, key=lambda r: r.seq)
                self.board.remove(r)
                self.log.append(
                    f"{d.name}: -1 replica on {r.slice} (no backlog for {quiet_for:.1f} s)"
                )

    # -- 5. base replicas ----------------------------------------------------------------------

    def rebalance(self) -> None:
        """Move one base replica per tick to where the placement would have put it, had every
        slice been there from the start: off an overcommitted slice onto one with free reserve,
        or (``spread``) off a node holding two of its replicas onto a node holding none.

        Slices and nodes come up one by one when a pool starts or grows, so early plans
        overcommit and stack; stability must not make that permanent.
        """
        b = self.board
        for d in self.order:
            for r in [r for r in b.of[d.name] if r.kind == BASE]:
                why = self._misplaced(d, r)
                if why is None:
                    continue
                roomy = [
                    k
                    for k in b.slices
                    if k != r.slice
                    and b.why_not(d, k) is None
                    and b.fits_reserve(d, k)
                    and (why != "stacked" or b.on_node(d, b.node_of[k]) == 0)
                ]
                if not roomy:
                    continue
                target = b.pick(d, roomy)
                b.remove(r)
                self.new(d, target, BASE)
                self.log.append(f"{d.name}: base replica moved from {why} {r.slice} to {target}")
                return

    def _misplaced(self, d: Deployment, r: _Replica) -> str | None:
        b = self.board
        if b.free(r.slice) < -EPS:
            return "overcommitted"
        if d.strategy == "spread" and b.on_node(d, b.node_of[r.slice]) > 1:
            return "stacked"
        return None

    def place_bases(self) -> None:
        for d in self.order:
            while sum(r.kind == BASE for r in self.board.of[d.name]) < d.min_replicas:
                if not self.add_base(d):
                    break
            for head in self.displaced.pop(d.name, []):
                self.log.append(f"{head}: {d.name} lost a replica, no eligible slice to move it to")

    def add_base(self, d: Deployment) -> bool:
        b = self.board
        # An extra replica already running counts first: nothing restarts.
        extras = sorted((r for r in b.of[d.name] if r.kind == SCALED), key=lambda r: r.seq)
        if extras:
            return self.promote(d, extras[0])
        keys = [k for k in sorted(b.slices) if b.why_not(d, k) is None and b.fits_reserve(d, k)]
        if keys:
            return self.placed(d, self.new(d, b.pick(d, keys), BASE).slice)
        if d.critical:
            return self.preempt(d)
        borrowed = sorted((r for r in b.of[d.name] if r.kind == BORROWED), key=lambda r: r.seq)
        if borrowed:
            return self.promote(d, borrowed[0])  # it already time-shares that slice
        return self.overcommit(d)

    def placed(self, d: Deployment, key: str, note: str = "") -> bool:
        heads = self.displaced.get(d.name)
        if heads:
            self.log.append(f"{heads.pop(0)}: {d.name} moved to {key}{note}")
        else:
            self.log.append(f"{d.name}: base replica on {key}{note}")
        return True

    def promote(self, d: Deployment, r: _Replica) -> bool:
        r.kind = BASE
        heads = self.displaced.get(d.name)
        head = f"{heads.pop(0)}: " if heads else ""
        self.log.append(f"{head}{d.name}'s replica on {r.slice} now counts as a base replica")
        return True

    def overcommit(self, d: Deployment) -> bool:
        """Best-effort with no free reserve anywhere: time-share the least reserved slice."""
        b = self.board
        keys = [k for k in sorted(b.slices) if b.why_not(d, k) is None and not b.critical_on(k)]
        if not keys:
            return False
        key = min(keys, key=lambda k: (round(b.reserved(k), 9), k))
        after = b.reserved(key) + d.compute_share
        cap = b.slices[key].compute_share
        self.new(d, key, BASE)
        return self.placed(d, key, f" (overcommitted: {after:.2f} reserved of {cap:.2f})")

    def preempt(self, d: Deployment) -> bool:
        """Critical work with no slice of its own: evict the cheapest best-effort slice."""
        b = self.board
        best: tuple[tuple[Any, ...], str, list[_Replica]] | None = None
        for key in sorted(b.slices):
            victims = [r for r in b.on[key] if not b.dep(r).critical]
            if not victims or b.why_not(d, key, victims) or not b.fits_reserve(d, key, victims):
                continue
            # Prefer evicting work that keeps running elsewhere, then less of it.
            alone = sum(1 for r in victims if len(b.of[r.deployment]) == 1)
            evicted = sum(b.dep(r).compute_share for r in victims if r.kind != BORROWED)
            cost = (alone, len(victims), round(evicted, 9), key)
            if best is None or cost < best[0]:
                best = (cost, key, victims)
        if best is None:
            return False
        _, key, victims = best
        for r in victims:
            b.remove(r)
            if r.kind == BASE:
                self.displaced.setdefault(r.deployment, []).append(
                    f"{d.name} (critical) took {key}"
                )
        names = ", ".join(sorted({r.deployment for r in victims}))
        self.log.append(f"{d.name} (critical) preempted {names} on {key}")
        return self.placed(d, self.new(d, key, BASE).slice)

    # -- 6. scale up ---------------------------------------------------------------------------

    def scale_up(self) -> None:
        bpr = self.policy.backlog_per_replica
        for d in self.order:
            backlog = self.load(d).backlog
            n = len(self.board.of[d.name])
            if backlog == 0 or n >= d.max_replicas or backlog <= bpr * n:
                continue
            # Never more than the backlog justifies: a queue of 40 wants two replicas, not ten.
            count = min(self.policy.scale_up_step, d.max_replicas - n, math.ceil(backlog / bpr) - n)
            why = f"backlog {backlog} > {bpr} x {n}"
            for _ in range(count):
                if not self.add_extra(d, why):
                    self.log.append(f"{d.name}: {why}, but no slice can take another replica")
                    break

    def add_extra(self, d: Deployment, why: str) -> bool:
        b = self.board
        keys = [
            k
            for k in sorted(b.slices)
            if b.why_not(d, k) is None
            and b.fits_reserve(d, k)
            and (d.critical or not b.critical_on(k))
        ]
        if keys:
            key = self.new(d, b.pick(d, keys), SCALED).slice
            self.log.append(f"{d.name}: +1 replica on {key} ({why})")
            return True
        if d.critical:
            return False  # critical work does not borrow: its capacity must be guaranteed
        keys = [k for k in sorted(b.slices) if self.lendable(d, k)]
        if not keys:
            return False
        key = min(keys, key=lambda k: (b.on_node(d, b.node_of[k]), round(b.slices[k].busy, 9), k))
        owners = ", ".join(sorted({r.deployment for r in b.on[key]})) or "nobody"
        self.new(d, key, BORROWED)
        self.log.append(
            f"{d.name}: +1 replica on {key} ({why}), borrowed from {owners} "
            f"(busy {b.slices[key].busy:.2f})"
        )
        return True

    def lendable(self, d: Deployment, key: str) -> bool:
        """An idle slice whose own work has nothing waiting, not critical, not already lent."""
        b = self.board
        return (
            b.why_not(d, key) is None
            and not b.critical_on(key)
            and b.slices[key].busy < self.policy.idle_busy
            and not any(r.kind == BORROWED for r in b.on[key])
            and all(self.lends(b.dep(r)) for r in b.on[key])
        )

    def lends(self, owner: Deployment) -> bool:
        # Lending to a slice's own work that is missing its SLO would only be taken back.
        return self.load(owner).idle and self.pressed(owner) is None

    # -- 7. the plan ---------------------------------------------------------------------------

    def why_unplaced(self, d: Deployment, n: int) -> str:
        b = self.board
        kinds = "/".join(d.device_kinds)
        live = [s for s in b.slices.values() if s.kind in d.device_kinds]
        if not live:
            return f"no live slice of kind {kinds}"
        largest = max(s.memory_bytes for s in live)
        if d.memory_bytes > largest:
            return f"needs {_mib(d.memory_bytes)} MiB, largest slice has {_mib(largest)} MiB"
        codes = Counter(self.code(d, s.key) for s in live if s.key not in self.serving(d))
        parts = ", ".join(f"{count} {_words(code, d)}" for code, count in sorted(codes.items()))
        parts = parts or "none"
        return f"{n} of {d.min_replicas} replicas placed; other slices it may run on: {parts}"

    def code(self, d: Deployment, key: str) -> str:
        """Why ``key`` holds no replica of ``d``, reserve included."""
        if (code := self.board.why_not(d, key)) is not None:
            return code
        return "critical" if self.board.critical_on(key) else "share"

    def serving(self, d: Deployment) -> set[str]:
        return {r.slice for r in self.board.of[d.name]}

    def result(self) -> Plan:
        b = self.board
        assignment = {
            key: tuple(sorted({r.deployment for r in b.on[key]})) for key in sorted(b.slices)
        }
        replicas = {name: tuple(r.slice for r in self.ordered(name)) for name in sorted(b.of)}
        unplaced = {
            d.name: self.why_unplaced(d, len(b.of[d.name]))
            for d in self.order
            if len(b.of[d.name]) < d.min_replicas
        }
        return Plan(assignment, replicas, dict(sorted(unplaced.items())), tuple(self.log))

    def ordered(self, name: str) -> list[_Replica]:
        """Base replicas first, then extras in order of addition (what ``restore`` reads)."""
        return sorted(self.board.of[name], key=lambda r: (r.kind != BASE, r.seq))


class Scheduler:
    """The placement policy with the state it keeps from one tick to the next."""

    def __init__(self, policy: Policy = Policy()) -> None:  # frozen: safe to share
        self.policy = policy
        self.previous: Plan | None = None
        self._replicas: list[_Replica] = []
        self._slice_node: dict[str, str] = {}
        self._last_busy: dict[str, float] = {}  # deployment -> last time it had a backlog
        self._seq = 0

    def plan(
        self,
        nodes: Sequence[NodeView],
        deployments: Sequence[Deployment],
        loads: Mapping[str, Load],
        now: float,
    ) -> Plan:
        """One tick: keep what still fits, take loans back, shrink, place, grow."""
        board = _Board(nodes, deployments, self.policy)
        tick = _Tick(board, loads, now, dict(self._last_busy), self._seq)
        tick.keep(self._replicas, self._slice_node)
        tick.note_loads()
        tick.take_back()
        tick.scale_down()
        tick.place_bases()
        tick.rebalance()
        tick.scale_up()
        plan = tick.result()
        # State changes only once the whole tick has succeeded.
        self._replicas = [r for name in sorted(board.of) for r in tick.ordered(name)]
        self._slice_node = dict(board.node_of)
        self._last_busy = tick.last_busy
        self._seq = tick.seq
        self.previous = plan
        return plan

    def restore(self, plan: Plan) -> None:
        """Adopt a plan read back from storage as the previous one (after a restart)."""
        self._replicas = []
        for name in sorted(plan.replicas):
            for key in plan.replicas[name]:
                self._replicas.append(_Replica(name, key, "", self._seq))
                self._seq += 1
        self._slice_node = {}
        self._last_busy = {}
        self.previous = plan
