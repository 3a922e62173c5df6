"""The placement policy (``inference.placement``): pure functions of nodes, deployments, loads
and time, so every rule is checked tick by tick with made-up clusters (no processes, no sleep)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.placement import (
    Deployment,
    Load,
    NodeView,
    Plan,
    Policy,
    Scheduler,
    SliceView,
)

MIB = 1 << 20
GIB = 1 << 30


def node(
    name: str,
    n: int = 2,
    share: float = 0.5,
    memory: int = GIB,
    kind: str = "cpu",
    busy: float = 0.1,
    draining: bool = False,
) -> NodeView:
    device = "cpu" if kind == "cpu" else f"{kind}:0"
    slices = tuple(
        SliceView(name, f"{kind}/{i}", device, kind, share, memory, busy) for i in range(n)
    )
    return NodeView(name, slices, draining)


def dep(name: str, **kw: object) -> Deployment:
    return Deployment(name, f"var/models/{name}/1", model=name, model_id=f"{name}-1", **kw)  # type: ignore[arg-type]


def nodes_of(plan: Plan, name: str) -> set[str]:
    return {key.split("/")[0] for key in plan.replicas[name]}


def said(plan: Plan, *words: str) -> list[str]:
    """The decisions that contain every one of ``words``."""
    return [d for d in plan.decisions if all(w in d for w in words)]


TWO_NODES = [node("node-a"), node("node-b")]
# The figures in these tests' decisions were written for these thresholds.
TESTED = Policy(backlog_per_replica=32, scale_up_step=2)


# -- the dataclasses --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"name": "bad name"}, "must match"),
        ({"name": "-x"}, "must match"),
        ({"checkpoint": ""}, "checkpoint is required"),
        ({"priority": "urgent"}, "priority must be one of"),
        ({"strategy": "random"}, "strategy must be one of"),
        ({"compute_share": 0.0}, "compute_share must be in"),
        ({"compute_share": 1.5}, "compute_share must be in"),
        ({"min_replicas": 3, "max_replicas": 2}, "min_replicas <= max_replicas"),
        ({"min_replicas": -1}, "min_replicas <= max_replicas"),
        ({"slo_ms": 0}, "slo_ms must be > 0"),
        ({"memory_bytes": -1}, "memory_bytes must be"),
        ({"device_kinds": ()}, "device_kinds must be"),
    ],
)
def test_deployment_refuses_bad_values_with_clear_messages(kw: dict, message: str) -> None:
    args = {"name": "fault", "checkpoint": "var/models/fault/3"} | kw
    with pytest.raises(ValueError, match=message):
        Deployment(**args)


def test_deployment_slice_node_and_plan_round_trip_through_json() -> None:
    d = dep("fault@3", priority="critical", device_kinds=["cuda", "cpu"], batching={"m": 8})
    assert d.device_kinds == ("cuda", "cpu")
    assert Deployment.from_dict(json.loads(json.dumps(d.to_dict()))) == d
    n = NodeView("node-a", (SliceView("node-a", "cuda:0/1", "cuda:0", "cuda", 0.25, GIB),))
    assert NodeView.from_dict(json.loads(json.dumps(n.to_dict()))) == n
    assert n.slices[0].key == "node-a/cuda:0/1"
    assert Load.from_dict(Load(3, 1, p99_ms=20.0).to_dict()) == Load(3, 1, p99_ms=20.0)
    assert Policy.from_dict(Policy(share_critical=True).to_dict()) == Policy(share_critical=True)
    with pytest.raises(ValueError, match="unknown field"):
        Deployment.from_dict(d.to_dict() | {"colour": "red"})

    plan = Scheduler(TESTED).plan(TWO_NODES, [dep("eta"), dep("fault", min_replicas=2)], {}, 0.0)
    text = json.dumps(plan.to_dict())
    assert Plan.from_dict(json.loads(text)) == plan


def test_routes_list_queue_model_and_replicas_of_served_deployments() -> None:
    eta, huge = dep("eta", min_replicas=2), dep("huge", memory_bytes=8 * GIB)
    plan = Scheduler(TESTED).plan(TWO_NODES, [eta, huge], {}, 0.0)
    assert plan.routes([eta, huge]) == {
        "eta": {
            "queue": "inference.eta",
            "model": "eta",
            "model_id": "eta-1",
            "replicas": list(plan.replicas["eta"]),
        }
    }
    assert len(plan.replicas["eta"]) == 2


# -- placement: strategies, eligibility, stability --------------------------------------------


def test_spread_lands_base_replicas_on_both_nodes() -> None:
    deployments = [dep(n) for n in ("eta", "fault", "payload", "wear")]
    plan = Scheduler(TESTED).plan(TWO_NODES, deployments, {}, 0.0)
    assert all(len(v) == 1 for v in plan.assignment.values())  # one per slice, both nodes
    assert {key.split("/")[0] for key, v in plan.assignment.items() if v} == {"node-a", "node-b"}
    two = Scheduler(TESTED).plan(TWO_NODES, [dep("eta", min_replicas=2)], {}, 0.0)
    assert nodes_of(two, "eta") == {"node-a", "node-b"}


def test_binpack_fills_node_a_before_node_b() -> None:
    deployments = [dep(n, strategy="binpack") for n in ("eta", "fault", "payload", "wear")]
    plan = Scheduler(TESTED).plan(TWO_NODES, deployments, {}, 0.0)
    assert plan.assignment["node-a/cpu/0"] == ("eta", "fault")
    assert plan.assignment["node-a/cpu/1"] == ("payload", "wear")
    assert plan.assignment["node-b/cpu/0"] == plan.assignment["node-b/cpu/1"] == ()


def test_memory_of_a_slice_is_never_exceeded_and_kinds_are_respected() -> None:
    big = [dep(n, memory_bytes=600 * MIB, strategy="binpack") for n in ("a1", "a2", "a3")]
    gpu_only = dep("vision", device_kinds=("cuda",))
    plan = Scheduler(TESTED).plan([node("node-a")], [*big, gpu_only], {}, 0.0)
    assert plan.assignment == {"node-a/cpu/0": ("a1",), "node-a/cpu/1": ("a2",)}
    assert plan.unplaced["a3"] == (
        "0 of 1 replicas placed; other slices it may run on: 2 without 600 MiB free"
    )
    assert plan.unplaced["vision"] == "no live slice of kind cuda"


def test_a_deployment_too_large_for_any_slice_is_unplaced_with_the_reason() -> None:
    plan = Scheduler(TESTED).plan(TWO_NODES, [dep("huge", memory_bytes=4 * GIB)], {}, 0.0)
    assert plan.replicas["huge"] == ()
    assert plan.unplaced == {"huge": "needs 4096 MiB, largest slice has 1024 MiB"}
    assert plan.routes([dep("huge", memory_bytes=4 * GIB)]) == {}


def test_two_replicas_of_one_deployment_never_share_a_slice() -> None:
    plan = Scheduler(TESTED).plan([node("node-a")], [dep("eta", min_replicas=3)], {}, 0.0)
    assert sorted(plan.replicas["eta"]) == ["node-a/cpu/0", "node-a/cpu/1"]
    assert plan.unplaced["eta"].startswith("2 of 3 replicas placed")


def test_a_stable_cluster_is_never_reshuffled() -> None:
    scheduler = Scheduler(TESTED)
    deployments = [dep("eta", min_replicas=2), dep("fault"), dep("payload")]
    first = scheduler.plan(TWO_NODES, deployments, {}, 0.0)
    assert first.decisions  # the first tick says where everything went
    second = scheduler.plan(TWO_NODES, deployments, {}, 1.0)
    assert second.replicas == first.replicas
    assert second.decisions == ()
    # A new, emptier node joins: nothing moves to it.
    third = scheduler.plan([*TWO_NODES, node("node-c")], deployments, {}, 2.0)
    assert third.replicas == first.replicas
    assert third.assignment["node-c/cpu/0"] == third.assignment["node-c/cpu/1"] == ()
    assert third.decisions == ()


def test_a_restarted_scheduler_keeps_the_stored_plan() -> None:
    deployments = [dep("eta", min_replicas=2), dep("fault", strategy="binpack")]
    before = Scheduler(TESTED).plan(TWO_NODES, deployments, {}, 0.0)
    restarted = Scheduler(TESTED)
    restarted.restore(Plan.from_dict(json.loads(json.dumps(before.to_dict()))))
    after = restarted.plan(TWO_NODES, deployments, {}, 100.0)
    assert after.replicas == before.replicas
    assert after.decisions == ()


def test_a_removed_deployment_stops_and_the_others_stay() -> None:
    scheduler = Scheduler(TESTED)
    first = scheduler.plan(TWO_NODES, [dep("eta"), dep("fault")], {}, 0.0)
    second = scheduler.plan(TWO_NODES, [dep("fault")], {}, 1.0)
    assert second.replicas == {"fault": first.replicas["fault"]}
    assert said(second, "eta is no longer deployed")


# -- critical work: isolation and preemption --------------------------------------------------


def test_critical_work_never_shares_its_slice_unless_the_policy_allows_it() -> None:
    one = [node("node-a", n=1, share=1.0)]
    deployments = [dep("trajectory", priority="critical"), dep("eta")]
    plan = Scheduler(TESTED).plan(one, deployments, {}, 0.0)
    assert plan.assignment == {"node-a/cpu/0": ("trajectory",)}
    assert plan.unplaced["eta"] == (
        "0 of 1 replicas placed; other slices it may run on: 1 held by critical work"
    )
    shared = Scheduler(Policy(share_critical=True)).plan(one, deployments, {}, 0.0)
    assert shared.assignment == {"node-a/cpu/0": ("eta", "trajectory")}


def test_critical_work_preempts_the_slice_whose_best_effort_work_runs_elsewhere_too() -> None:
    # eta runs on both slices, payload only on cpu/0: taking cpu/1 costs the least.
    scheduler = Scheduler(TESTED)
    scheduler.restore(
        Plan(
            assignment={"node-a/cpu/0": ("eta", "payload"), "node-a/cpu/1": ("eta",)},
            replicas={"eta": ("node-a/cpu/0", "node-a/cpu/1"), "payload": ("node-a/cpu/0",)},
        )
    )
    deployments = [
        dep("eta", min_replicas=2),
        dep("payload"),
        dep("trajectory", priority="critical", compute_share=0.5),
    ]
    plan = scheduler.plan([node("node-a")], deployments, {}, 0.0)
    assert plan.assignment == {
        "node-a/cpu/0": ("eta", "payload"),
        "node-a/cpu/1": ("trajectory",),
    }
    assert said(plan, "trajectory (critical) preempted eta on node-a/cpu/1")
    assert plan.unplaced["eta"] == (
        "1 of 2 replicas placed; other slices it may run on: 1 held by critical work"
    )


def test_preempted_best_effort_work_is_re_placed_elsewhere_in_the_same_tick() -> None:
    scheduler = Scheduler(TESTED)
    nodes = [node("node-a"), node("node-b", n=1)]
    scheduler.restore(
        Plan(
            assignment={},
            replicas={
                "eta": ("node-a/cpu/0", "node-a/cpu/1"),
                "payload": ("node-a/cpu/0",),
                "wear": ("node-b/cpu/0",),
            },
        )
    )
    deployments = [
        dep("eta", min_replicas=2),
        dep("payload"),
        dep("wear", compute_share=0.5),
        dep("trajectory", priority="critical", compute_share=0.5),
    ]
    plan = scheduler.plan(nodes, deployments, {}, 0.0)
    assert plan.assignment["node-a/cpu/1"] == ("trajectory",)
    assert said(plan, "trajectory (critical) took node-a/cpu/1: eta moved to node-b/cpu/0")
    assert said(plan, "overcommitted: 0.75 reserved of 0.50")
    assert sorted(plan.replicas["eta"]) == ["node-a/cpu/0", "node-b/cpu/0"]
    assert plan.unplaced == {}


def test_critical_slices_are_never_lent_and_critical_work_never_borrows() -> None:
    scheduler = Scheduler(TESTED)
    nodes = [node("node-a", busy=0.0)]
    deployments = [
        dep("trajectory", priority="critical", compute_share=0.5),
        dep("eta", compute_share=0.5),
    ]
    scheduler.plan(nodes, deployments, {}, 0.0)
    plan = scheduler.plan(nodes, deployments, {"eta": Load(queued=500)}, 1.0)
    assert plan.assignment == {"node-a/cpu/0": ("trajectory",), "node-a/cpu/1": ("eta",)}
    assert said(plan, "eta: backlog 500 > 32 x 1, but no slice can take another replica")
    plan = scheduler.plan(nodes, deployments, {"trajectory": Load(queued=500)}, 2.0)
    assert plan.replicas["trajectory"] == ("node-a/cpu/0",)
    assert said(plan, "trajectory: backlog 500 > 32 x 1, but no slice")


# -- overcommit, scale up, lending, take-back, scale down -------------------------------------


def test_best_effort_shares_the_least_reserved_slice_rather_than_stay_unplaced() -> None:
    one = [node("node-a", n=1, share=0.25)]
    plan = Scheduler(TESTED).plan(one, [dep("eta"), dep("payload")], {}, 0.0)
    assert plan.assignment == {"node-a/cpu/0": ("eta", "payload")}
    assert said(plan, "payload: base replica on node-a/cpu/0 (overcommitted: 0.50 reserved")
    assert plan.unplaced == {}


def test_scale_up_uses_free_reserve_first_spread_across_nodes() -> None:
    scheduler = Scheduler(TESTED)
    nodes = [node("node-a", share=1.0), node("node-b", share=1.0)]
    deployments = [dep("eta")]
    scheduler.plan(nodes, deployments, {}, 0.0)
    plan = scheduler.plan(nodes, deployments, {"eta": Load(queued=100, in_flight=40)}, 1.0)
    assert plan.replicas["eta"] == ("node-a/cpu/0", "node-b/cpu/0", "node-a/cpu/1")
    assert said(plan, "eta: +1 replica on node-b/cpu/0 (backlog 140 > 32 x 1)")
    assert not said(plan, "borrowed")


def test_scale_up_stops_at_max_replicas_and_adds_at_most_a_step_per_tick() -> None:
    scheduler = Scheduler(TESTED)
    nodes = [node("node-a", n=4, share=1.0), node("node-b", n=4, share=1.0)]
    deployments = [dep("eta", max_replicas=4)]
    counts = [
        len(scheduler.plan(nodes, deployments, {"eta": Load(queued=10_000)}, t).replicas["eta"])
        for t in range(4)
    ]
    assert counts == [3, 4, 4, 4]
    # Only as many replicas as the backlog justifies: 40 queued wants two.
    small = Scheduler(TESTED)
    small.plan(nodes, [dep("fault")], {}, 0.0)
    plan = small.plan(nodes, [dep("fault")], {"fault": Load(queued=40)}, 1.0)
    assert len(plan.replicas["fault"]) == 2


def test_a_growing_queue_borrows_idle_slices_of_other_nodes_then_gives_them_back() -> None:
    scheduler = Scheduler(TESTED)
    deployments = [dep(n, compute_share=0.5) for n in ("eta", "fault", "payload", "wear")]
    base = scheduler.plan(TWO_NODES, deployments, {}, 0.0)
    assert base.replicas["fault"] == ("node-b/cpu/0",)  # every slice's reserve is now taken

    busy = {"fault": Load(queued=140)}
    plan = scheduler.plan(TWO_NODES, deployments, busy, 1.0)
    assert plan.decisions == (
        "fault: +1 replica on node-a/cpu/0 (backlog 140 > 32 x 1), borrowed from eta (busy 0.10)",
        "fault: +1 replica on node-a/cpu/1 (backlog 140 > 32 x 1), "
        "borrowed from payload (busy 0.10)",
    )
    plan = scheduler.plan(TWO_NODES, deployments, busy, 2.0)
    assert plan.replicas["fault"] == (
        "node-b/cpu/0",
        "node-a/cpu/0",
        "node-a/cpu/1",
        "node-b/cpu/1",
    )
    assert plan.assignment["node-b/cpu/1"] == ("fault", "wear")

    # Quiet again (one request in flight counts as none): one replica back per tick after 3 s,
    # the most recent first.
    quiet = {"fault": Load(in_flight=1)}
    shrinking = [scheduler.plan(TWO_NODES, deployments, quiet, t) for t in (3.0, 4.0, 5.0, 6.0)]
    assert [len(p.replicas["fault"]) for p in shrinking] == [4, 4, 3, 2]
    assert shrinking[2].decisions == ("fault: -1 replica on node-b/cpu/1 (no backlog for 3.0 s)",)
    last = [scheduler.plan(TWO_NODES, deployments, quiet, t) for t in (7.0, 8.0)]
    assert last[0].replicas == base.replicas
    assert last[1].decisions == ()


def test_a_loan_is_taken_back_when_the_owner_queues_up_or_misses_its_slo() -> None:
    scheduler = Scheduler(TESTED)
    deployments = [dep(n, compute_share=0.5, slo_ms=200.0) for n in ("eta", "fault", "payload")]
    nodes = [node("node-a", n=3)]
    scheduler.plan(nodes, deployments, {}, 0.0)
    plan = scheduler.plan(nodes, deployments, {"fault": Load(queued=100)}, 1.0)
    assert plan.assignment["node-a/cpu/0"] == ("eta", "fault")
    assert plan.assignment["node-a/cpu/2"] == ("fault", "payload")

    loads = {"fault": Load(queued=100), "eta": Load(queued=50)}
    plan = scheduler.plan(nodes, deployments, loads, 2.0)
    assert plan.assignment["node-a/cpu/0"] == ("eta",)
    assert said(plan, "eta needs node-a/cpu/0 back (backlog 50 > 32): fault's borrowed replica")
    assert said(plan, "taken back")

    loads = {"fault": Load(queued=100), "eta": Load(queued=50), "payload": Load(p99_ms=350.0)}
    plan = scheduler.plan(nodes, deployments, loads, 3.0)
    assert plan.assignment["node-a/cpu/2"] == ("payload",)
    assert said(plan, "payload needs node-a/cpu/2 back (p99 350 ms > SLO 200 ms)")
    assert plan.replicas["fault"] == ("node-a/cpu/1",)


def test_a_deployment_without_minimum_scales_from_zero_and_back_to_zero() -> None:
    scheduler = Scheduler(TESTED)
    batch = dep("batch", min_replicas=0)
    assert scheduler.plan(TWO_NODES, [batch], {}, 0.0).replicas["batch"] == ()
    plan = scheduler.plan(TWO_NODES, [batch], {"batch": Load(queued=5)}, 1.0)
    assert plan.replicas["batch"] == ("node-a/cpu/0",)
    assert plan.unplaced == {}
    assert scheduler.plan(TWO_NODES, [batch], {}, 3.0).replicas["batch"] == ("node-a/cpu/0",)
    plan = scheduler.plan(TWO_NODES, [batch], {}, 4.0)
    assert plan.replicas["batch"] == ()
    assert plan.routes([batch]) == {}


# -- failure: dead and draining nodes ---------------------------------------------------------


def test_replicas_of_a_dead_node_are_re_placed_in_the_same_tick() -> None:
    scheduler = Scheduler(TESTED)
    deployments = [dep("eta"), dep("fault"), dep("payload")]
    before = scheduler.plan(TWO_NODES, deployments, {}, 0.0)
    lost = [n for n, keys in before.replicas.items() if keys[0].startswith("node-b/")]
    assert lost
    plan = scheduler.plan([node("node-a")], deployments, {}, 1.0)
    assert set(plan.assignment) == {"node-a/cpu/0", "node-a/cpu/1"}
    for name in lost:
        assert nodes_of(plan, name) == {"node-a"}
        assert said(plan, f"node-b is gone: {name} moved to node-a/")
    assert plan.unplaced == {}


def test_a_draining_node_keeps_its_slices_in_the_plan_with_nothing_assigned() -> None:
    scheduler = Scheduler(TESTED)
    deployments = [dep("eta"), dep("fault"), dep("payload")]
    before = scheduler.plan(TWO_NODES, deployments, {}, 0.0)
    on_a = [n for n, keys in before.replicas.items() if keys[0].startswith("node-a/")]
    plan = scheduler.plan([node("node-a", draining=True), node("node-b")], deployments, {}, 1.0)
    assert plan.assignment["node-a/cpu/0"] == plan.assignment["node-a/cpu/1"] == ()
    for name in on_a:
        assert nodes_of(plan, name) == {"node-b"}
        assert said(plan, f"node-a is draining: {name} moved to node-b/")
    assert all(nodes_of(plan, n) == {"node-b"} for n in ("eta", "fault", "payload"))


def test_extra_replicas_on_a_lost_node_are_simply_stopped() -> None:
    scheduler = Scheduler(TESTED)
    nodes = [node("node-a", share=1.0), node("node-b", share=1.0)]
    scheduler.plan(nodes, [dep("eta")], {}, 0.0)
    plan = scheduler.plan(nodes, [dep("eta")], {"eta": Load(queued=60)}, 1.0)
    assert plan.replicas["eta"] == ("node-a/cpu/0", "node-b/cpu/0")
    plan = scheduler.plan([node("node-a", share=1.0)], [dep("eta")], {}, 2.0)
    assert plan.replicas["eta"] == ("node-a/cpu/0",)
    assert plan.decisions == ("node-b is gone: eta's extra replica on node-b/cpu/0 stopped",)


# -- invariants for any cluster ---------------------------------------------------------------

KINDS = ("cpu", "cuda", "npu")


@st.composite
def clusters(draw: st.DrawFn) -> tuple[list[NodeView], list[Deployment]]:
    nodes = []
    for i in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(KINDS))
        slices = tuple(
            SliceView(
                f"n{i}",
                f"{kind}/{j}",
                kind,
                kind,
                draw(st.sampled_from((0.25, 0.5, 1.0))),
                draw(st.sampled_from((256 * MIB, GIB, 4 * GIB))),
                draw(st.floats(0, 1)),
            )
            for j in range(draw(st.integers(1, 3)))
        )
        nodes.append(NodeView(f"n{i}", slices))
    deployments = []
    for name in draw(st.lists(st.sampled_from("abcdef"), min_size=1, max_size=5, unique=True)):
        low = draw(st.integers(0, 3))
        deployments.append(
            dep(
                name,
                priority=draw(st.sampled_from(("critical", "best-effort"))),
                strategy=draw(st.sampled_from(("spread", "binpack"))),
                min_replicas=low,
                max_replicas=low + draw(st.integers(0, 3)),
                memory_bytes=draw(st.sampled_from((0, 128 * MIB, 512 * MIB, 2 * GIB))),
                compute_share=draw(st.sampled_from((0.1, 0.25, 0.5, 1.0))),
                device_kinds=tuple(
                    draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=3, unique=True))
                ),
            )
        )
    return nodes, deployments


loads = st.builds(
    Load,
    queued=st.sampled_from((0, 0, 10, 100, 1000)),
    in_flight=st.integers(0, 40),
    p99_ms=st.none() | st.floats(1, 2000),
)


@settings(max_examples=60, deadline=None)
@given(cluster=clusters(), data=st.data())
def test_no_plan_breaks_memory_isolation_max_replicas_or_one_replica_per_slice(
    cluster: tuple[list[NodeView], list[Deployment]], data: st.DataObject
) -> None:
    nodes, deployments = cluster
    by_name = {d.name: d for d in deployments}
    scheduler, twin = Scheduler(TESTED), Scheduler(TESTED)
    for tick in range(4):
        alive = [
            NodeView(n.name, n.slices, draining=data.draw(st.booleans()))
            for n in nodes
            if data.draw(st.integers(0, 4)) > 0
        ]
        demand = {d.name: data.draw(loads) for d in deployments}
        plan = scheduler.plan(alive, deployments, demand, float(tick * 2))
        assert twin.plan(alive, deployments, demand, float(tick * 2)) == plan  # deterministic
        slices = {s.key: s for n in alive for s in n.slices}
        assert set(plan.assignment) == set(slices)
        for key, names in plan.assignment.items():
            assert sum(by_name[n].memory_bytes for n in names) <= slices[key].memory_bytes
            if any(by_name[n].critical for n in names):
                assert len(names) == 1
            if any(n.draining for n in alive if key.startswith(f"{n.name}/")):
                assert names == ()
        for d in deployments:
            keys = plan.replicas[d.name]
            assert len(keys) <= d.max_replicas
            assert len(set(keys)) == len(keys)
            assert all(d.name in plan.assignment[k] for k in keys)
            assert all(slices[k].kind in d.device_kinds for k in keys)
            assert (d.name in plan.unplaced) == (len(keys) < d.min_replicas)
        json.dumps(plan.to_dict())


def test_a_base_replica_leaves_an_overcommitted_slice_once_a_free_one_appears():
    deployments = [dep("eta", compute_share=0.5), dep("payload", compute_share=0.5)]
    sched = Scheduler(TESTED)
    first = sched.plan([node("a", 1, share=0.5)], deployments, {}, now=0.0)
    assert first.assignment["a/cpu/0"] == ("eta", "payload")  # overcommitted: nothing else
    later = sched.plan([node("a", 2, share=0.5)], deployments, {}, now=1.0)
    assert sorted(later.assignment.values()) == [("eta",), ("payload",)]
    assert any("moved from overcommitted" in d for d in later.decisions)


def test_spread_moves_a_stacked_replica_to_a_node_that_joins_later():
    deployment = dep("eta", min_replicas=2, strategy="spread")
    sched = Scheduler(TESTED)
    alone = sched.plan([node("node-a")], [deployment], {}, now=0.0)
    assert nodes_of(alone, "eta") == {"node-a"}
    joined = sched.plan([node("node-a"), node("node-b")], [deployment], {}, now=1.0)
    assert nodes_of(joined, "eta") == {"node-a", "node-b"}
    assert said(joined, "eta: base replica moved from stacked node-a/")
    again = sched.plan([node("node-a"), node("node-b")], [deployment], {}, now=2.0)
    assert again.replicas == joined.replicas, "settled: nothing moves once spread"
