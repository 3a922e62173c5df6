"""The pool's shared state in Redis: nodes and their slices, deployments, drains, the plan.

Everything that spans processes goes through here, so a node, a slice worker, the scheduler and
fleet's API agree on one picture without talking to each other directly:

``<prefix>:node:<node>``         a node's heartbeat (its devices and slices), expiring: a node that
                                 stops beating disappears on its own (``node_ttl_s``)
``<prefix>:slice:<node>/<slice>`` a slice worker's heartbeat: what it serves and how it is doing
                                 (batching figures, delivered share, memory), expiring likewise
``<prefix>:nodes``, ``:slices``   sets indexing the heartbeat keys (the keyspace is never scanned:
                                 it also holds every Celery result)
``<prefix>:deployments``          hash of deployment name -> ``Deployment`` JSON (what to serve)
``<prefix>:draining``             hash of node -> who asked and when (persists across restarts)
``<prefix>:plan``                 the scheduler's last ``Plan`` and the routing table, also
                                 published on the channel of the same name
``<prefix>:leader``               the running scheduler's lease (one scheduler acts at a time)

Records are JSON. Heartbeats carry the writer's wall clock (``at``) so readers can show ages;
liveness itself is the key's expiry in Redis, one clock for everyone.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from inference import config
from inference.client import pack_cap
from inference.placement import Deployment, NodeView, Plan, SliceView

DEFAULT_PREFIX = "haulmind:pool"
HEARTBEAT_S = 1.0  # a node's beat
SLICE_BEAT_S = 0.5  # a slice's: its load is what the scheduler scales on, so it is fresher
NODE_TTL_S = 5.0


# The scheduler's lease: renewed by its holder, taken when free, never by anyone else.
_HOLD_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def redis_url() -> str:
    """The pool's Redis: ``HAULMIND_POOL_REDIS_URL`` (or its ``_FILE``), else fleet's
    ``REDIS_URL``."""
    return config.read_env("HAULMIND_POOL_REDIS_URL") or config.redis_url()


def pool_prefix() -> str:
    """Key prefix: ``HAULMIND_POOL_PREFIX`` (tests and side-by-side pools use their own)."""
    return os.environ.get("HAULMIND_POOL_PREFIX") or DEFAULT_PREFIX


@dataclass(frozen=True)
class PlanRecord:
    """The plan as stored: the plan, its version (bumped on every change) and when."""

    version: int
    at: float
    plan: Plan
    routes: dict[str, dict[str, Any]]


# A replica's cost per window counts once it has served this many (a cold start's first passes
# would make every pack tiny); the batcher's default batch size before that.
PACK_MEASURED_ROWS = 64
DEFAULT_BATCH_ROWS = 32


@dataclass(frozen=True)
class PackLimit:
    """How to cut windows into packs for one deployment (``inference.client.pack_sizes``)."""

    cap: int
    replicas: int
    min_rows: int
    ms_per_row: float | None = None


class PoolStore:
    """Reads and writes the pool's state (see the module docstring for the keys)."""

    def __init__(
        self,
        client: redis.Redis | None = None,
        *,
        prefix: str | None = None,
        node_ttl_s: float = NODE_TTL_S,
    ) -> None:
        self.redis = client or redis.Redis.from_url(redis_url())
        self.prefix = prefix or pool_prefix()
        self.node_ttl_s = node_ttl_s

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # --- heartbeats ----------------------------------------------------------------------------

    def beat_node(self, record: Mapping[str, Any]) -> None:
        """A node's heartbeat: ``{"name", "slices": [names], "devices", "pid", ...}``."""
        self._put("node", record["name"], record)

    def beat_slice(self, record: Mapping[str, Any]) -> None:
        """A slice worker's heartbeat: ``SliceView`` fields plus its figures."""
        self._put("slice", f"{record['node']}/{record['name']}", record)

    def _put(self, kind: str, name: str, record: Mapping[str, Any]) -> None:
        # The record expires on its own; the index of names (a set, never scanned for) lets
        # readers find the records without walking the whole keyspace.
        payload = json.dumps({**record, "at": time.time()}, default=str)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self.key(kind, name), payload, px=int(self.node_ttl_s * 1000))
            pipe.sadd(self.key(kind + "s"), name)
            pipe.execute()

    def forget_node(self, node: str) -> None:
        """Remove a node at once (a clean shutdown), rather than waiting for it to expire."""
        slices = [s for s in self._members("slice") if s.startswith(node + "/")]
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(self.key("node", node), *(self.key("slice", s) for s in slices))
            pipe.srem(self.key("nodes"), node)
            if slices:
                pipe.srem(self.key("slices"), *slices)
            pipe.execute()

    def node_records(self) -> list[dict[str, Any]]:
        return self._records("node")

    def slice_records(self) -> list[dict[str, Any]]:
        return self._records("slice")

    def _members(self, kind: str) -> list[str]:
        return sorted(_text(m) for m in self.redis.smembers(self.key(kind + "s")))

    def _records(self, kind: str) -> list[dict[str, Any]]:
        names = self._members(kind)
        values = self.redis.mget([self.key(kind, n) for n in names]) if names else []
        expired = [n for n, v in zip(names, values, strict=True) if v is None]
        if expired:  # their heartbeats stopped: drop them from the index too
            self.redis.srem(self.key(kind + "s"), *expired)
        return [json.loads(v) for v in values if v is not None]

    def node_views(self) -> list[NodeView]:
        """Live nodes as the scheduler sees them: a slice counts only while its worker beats
        and its node beats too (a node whose agent died takes its slices with it)."""
        draining = set(self.draining())
        by_node: dict[str, list[SliceView]] = {n["name"]: [] for n in self.node_records()}
        for record in self.slice_records():
            if record["node"] in by_node:
                by_node[record["node"]].append(slice_view(record))
        return [
            NodeView(
                name=name,
                slices=tuple(sorted(views, key=lambda s: s.name)),
                draining=name in draining,
            )
            for name, views in sorted(by_node.items())
        ]

    # --- deployments ---------------------------------------------------------------------------

    def put_deployment(self, deployment: Deployment) -> None:
        self.redis.hset(self.key("deployments"), deployment.name, json.dumps(deployment.to_dict()))

    def remove_deployment(self, name: str) -> bool:
        return bool(self.redis.hdel(self.key("deployments"), name))

    def deployments(self) -> list[Deployment]:
        raw = self.redis.hgetall(self.key("deployments"))
        return sorted(
            (Deployment.from_dict(json.loads(v)) for v in raw.values()), key=lambda d: d.name
        )

    def deployment(self, name: str) -> Deployment | None:
        raw = self.redis.hget(self.key("deployments"), name)
        return None if raw is None else Deployment.from_dict(json.loads(raw))

    # --- drain ---------------------------------------------------------------------------------

    def set_draining(self, node: str, draining: bool = True, *, by: str = "") -> None:
        """Drain a node (the scheduler moves its replicas away and its workers stop taking
        work) or put it back in service."""
        if draining:
            record = {"by": by, "at": time.time()}
            self.redis.hset(self.key("draining"), node, json.dumps(record))
        else:
            self.redis.hdel(self.key("draining"), node)

    def draining(self) -> dict[str, dict[str, Any]]:
        raw = self.redis.hgetall(self.key("draining"))
        return {_text(k): json.loads(v) for k, v in raw.items()}

    # --- the plan ------------------------------------------------------------------------------

    def write_plan(self, plan: Plan, deployments: Iterable[Deployment]) -> PlanRecord:
        """Store a new plan (version + 1) with its routing table and announce it."""
        previous = self.read_plan()
        record = PlanRecord(
            version=(previous.version if previous else 0) + 1,
            at=time.time(),
            plan=plan,
            routes=plan.routes(list(deployments)),
        )
        payload = json.dumps(
            {
                "version": record.version,
                "at": record.at,
                "plan": plan.to_dict(),
                "routes": record.routes,
            }
        )
        with self.redis.pipeline() as pipe:
            pipe.set(self.key("plan"), payload)
            pipe.publish(self.key("plan"), record.version)
            pipe.execute()
        return record

    def read_plan(self) -> PlanRecord | None:
        raw = self.redis.get(self.key("plan"))
        if raw is None:
            return None
        data = json.loads(raw)
        return PlanRecord(
            version=int(data["version"]),
            at=float(data["at"]),
            plan=Plan.from_dict(data["plan"]),
            routes=data["routes"],
        )

    def routes(self) -> dict[str, dict[str, Any]]:
        """The routing table: deployment -> ``{"queue", "model", "model_id", "replicas"}``."""
        record = self.read_plan()
        return record.routes if record else {}

    def pack_limits(self, names: Iterable[str]) -> dict[str, PackLimit]:
        """How a producer cuts a tick's windows into packs for each deployment in ``names``
        (those the pool knows): at most ``cap`` rows a pack, from the deployment's SLO and the
        cost per window its replicas measured (the slowest replica's), and how many replicas
        take its queue. One read of the deployments, the slices and the plan."""
        deployments = {d.name: d for d in self.deployments()}
        routes = self.routes()
        cost: dict[str, float] = {}
        for record in self.slice_records():
            for replica in record.get("replicas") or ():
                stats = replica.get("batching") or {}
                rows, busy = stats.get("rows") or 0, stats.get("busy_s") or 0.0
                if rows >= PACK_MEASURED_ROWS and busy > 0:
                    name = replica["deployment"]
                    cost[name] = max(cost.get(name, 0.0), busy * 1000 / rows)
        out: dict[str, PackLimit] = {}
        for name in names:
            deployment = deployments.get(name)
            if deployment is None:
                continue
            batch = int(deployment.batching.get("max_batch_size") or DEFAULT_BATCH_ROWS)
            out[name] = PackLimit(
                cap=pack_cap(deployment.slo_ms, cost.get(name), default_rows=batch),
                replicas=max(1, len((routes.get(name) or {}).get("replicas") or ())),
                min_rows=batch,
                ms_per_row=cost.get(name),
            )
        return out

    def assigned(self, slice_key: str) -> tuple[int, tuple[str, ...]]:
        """What one slice must serve now, with the plan version it comes from."""
        record = self.read_plan()
        if record is None:
            return 0, ()
        return record.version, tuple(record.plan.assignment.get(slice_key, ()))

    # --- one scheduler at a time ---------------------------------------------------------------

    def hold_leadership(self, owner: str, ttl_s: float) -> bool:
        """Take or renew the scheduler's lease; False while another scheduler holds it.

        One script, so the check and the renewal are one step: read, then renew as two
        commands, a lease that lapsed between them and was taken by the standby would be
        renewed for the standby while the old leader believed it still led (two leaders for a
        tick, both writing plans)."""
        return bool(self.redis.eval(_HOLD_LEASE, 1, self.key("leader"), owner, int(ttl_s * 1000)))

    def release_leadership(self, owner: str) -> None:
        """Give the lease up, only if this owner still holds it (same one step)."""
        self.redis.eval(_RELEASE_LEASE, 1, self.key("leader"), owner)

    def clear(self) -> None:
        """Remove every key of this pool (tests and benchmarks, on their own prefix)."""
        keys = [self.key(kind, n) for kind in ("node", "slice") for n in self._members(kind)]
        keys += [
            self.key(k) for k in ("nodes", "slices", "deployments", "draining", "plan", "leader")
        ]
        self.redis.delete(*keys)


def slice_view(record: Mapping[str, Any]) -> SliceView:
    """The scheduler's view of a slice heartbeat."""
    return SliceView(
        node=record["node"],
        name=record["name"],
        device=record["device"],
        kind=record["kind"],
        compute_share=float(record["compute_share"]),
        memory_bytes=int(record["memory_bytes"]),
        busy=float(record.get("busy") or 0.0),
        serving=tuple(record.get("serving") or ()),
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
