"""The traffic-permission arbiter's rules (fleet.control.traffic), as fast unit tests on plain
data: conflicts, first come first served, loaded before empty, the bounds on waiting, unused
grants, and no deadlock (a ring of N sections never fills; two trucks facing each other)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from fleet.control.traffic import (
    EXPIRE_GRANT,
    EXPIRE_REQUEST,
    GRANT,
    GRANTED,
    PENDING,
    RULE_LOADED_FIRST,
    RULE_MAX_OVERTAKES,
    RULE_MAX_WAIT,
    Permission,
    Rules,
    Section,
    decide,
    rings_of,
)

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
RULES = Rules(max_wait_s=120, max_overtakes=2, grant_unused_s=60, stale_s=75)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ask(
    truck: str, zone: str = "S", way: int | None = 1, t: float = 0, asked_t=None, **kw
) -> Permission:
    return Permission(
        key=truck + "@" + zone,
        truck=truck,
        zone=zone,
        way=way,
        status=PENDING,
        requested_at=at(t),
        last_asked_at=at(asked_t) if asked_t is not None else None,
        **kw,
    )


def holding(truck: str, zone: str = "S", way: int | None = 1, t: float = 0, **kw) -> Permission:
    entered = kw.pop("entered", True)
    return Permission(
        key=truck + "@" + zone,
        truck=truck,
        zone=zone,
        way=way,
        status=GRANTED,
        requested_at=at(t),
        granted_at=at(t),
        entered=entered,
        **kw,
    )


def sections(*names: str, capacity: int = 1) -> dict[str, Section]:
    return {name: Section(name, capacity, name) for name in names}


class Run:
    """Drives the arbiter through time like the services do: apply its grants, keep the
    overtakes it counted, release by hand."""

    def __init__(self, secs, perms, rings=(), rules=RULES) -> None:
        self.secs, self.rules, self.rings = secs, rules, rings
        self.perms = {p.key: p for p in perms}

    def step(self, t: float) -> list[str]:
        for key, p in self.perms.items():  # the waiting trucks renew their requests
            if p.status == PENDING:
                self.perms[key] = replace(p, last_asked_at=at(t))
        outcome = decide(self.secs, self.perms.values(), at(t), self.rules, self.rings)
        granted = []
        for d in outcome.decisions:
            if d.action == GRANT:
                p = self.perms[d.key]
                self.perms[d.key] = replace(p, status=GRANTED, granted_at=at(t), entered=True)
                granted.append(p.truck)
            else:
                del self.perms[d.key]
        for key, (overtakes, _) in outcome.waiting.items():
            self.perms[key] = replace(self.perms[key], overtakes=overtakes)
        return granted

    def add(self, p: Permission) -> None:
        self.perms[p.key] = p

    def release(self, truck: str, zone: str = "S") -> None:
        del self.perms[truck + "@" + zone]

    def holders(self, zone: str = "S") -> list[str]:
        return sorted(
            p.truck for p in self.perms.values() if p.zone == zone and p.status == GRANTED
        )


def test_a_free_section_is_granted_and_an_occupied_one_is_not():
    outcome = decide(sections("S"), [ask("A", t=0)], at(1), RULES)
    assert [(d.key, d.action) for d in outcome.decisions] == [("A@S", GRANT)]
    outcome = decide(sections("S"), [holding("A"), ask("B", t=1)], at(2), RULES)
    assert outcome.decisions == []
    assert "occupied by A" in outcome.waiting["B@S"][1]


def test_never_two_conflicting_grants_even_when_many_ask_at_once():
    asks = [ask(f"T{i}", way=1 + i % 2, t=0) for i in range(6)]
    outcome = decide(sections("S"), asks, at(1), RULES)
    assert len(outcome.granted()) == 1
    # Capacity 3: several, but only in one direction (the first's way).
    outcome = decide(sections("S", capacity=3), asks, at(1), RULES)
    granted = [next(a for a in asks if a.key == k) for k in outcome.granted()]
    assert len(granted) == 3 and {p.way for p in granted} == {1}
    assert any("other direction" in why for _, why in outcome.waiting.values())


def test_a_truck_asking_from_inside_conflicts_with_everyone():
    outcome = decide(sections("S", capacity=3), [holding("A"), ask("B", way=None)], at(1), RULES)
    assert outcome.decisions == []


def test_first_come_first_served():
    run = Run(sections("S"), [ask("C", t=3), ask("A", t=1), ask("B", t=2)])
    order = []
    for t in range(4, 20):
        for truck in run.step(t):
            order.append(truck)
            run.release(truck)
    assert order == ["A", "B", "C"]


def test_at_the_same_point_a_loaded_truck_goes_before_an_empty_one():
    run = Run(
        sections("S"),
        [
            holding("X"),
            ask("E", way=7, t=1),
            ask("L", way=7, t=2, loaded=True),
            ask("O", way=9, t=1.5),
        ],
    )
    assert run.step(3) == []
    run.release("X")
    outcome = decide(run.secs, run.perms.values(), at(4), RULES)
    assert outcome.decisions[0].key == "L@S" and outcome.decisions[0].rule == RULE_LOADED_FIRST
    # L took the place of E (the earliest at its point, 1.0): ahead of O (1.5, another point).
    # Then first come first served again: E (1.0) before O.
    order = []
    for t in range(4, 20):
        for truck in run.step(t):
            order.append(truck)
            run.release(truck)
    assert order == ["L", "E", "O"]


def test_no_request_waits_longer_than_the_bound_the_section_is_held_for_it():
    """A convoy section (capacity 2) kept busy in direction 1 while B waits to go the other
    way: once B has waited the bound, nobody else is let in, and B goes as soon as A is out."""
    rules = replace(RULES, max_overtakes=99)
    run = Run(sections("S", capacity=2), [holding("A", way=1), ask("B", way=2, t=0)], rules=rules)
    convoy = []
    for i, t in enumerate(range(10, 200, 10)):
        run.add(ask(f"C{i}", way=1, t=t - 5))
        for truck in run.step(t):
            convoy.append((t, truck))
            if truck != "B":
                run.release(truck)
        if t == 150:
            run.release("A")
        if "B" in run.holders():
            break
    assert convoy[-1] == (150, "B") or convoy[-1] == (160, "B")
    assert all(t < RULES.max_wait_s for t, truck in convoy if truck != "B")


def test_the_wait_bound_holds_the_section_for_the_late_request():
    rules = replace(RULES, max_overtakes=99)
    perms = [holding("A", way=1), ask("B", way=2, t=0, asked_t=120), ask("C", way=1, t=125)]
    outcome = decide(sections("S", capacity=2), perms, at(130), rules)
    assert outcome.decisions == []  # C would fit beside A, but the section is held for B
    assert "held for B" in outcome.waiting["C@S"][1]
    outcome = decide(sections("S", capacity=2), [perms[1], perms[2]], at(131), rules)
    assert outcome.decisions[0].key == "B@S" and outcome.decisions[0].rule == RULE_MAX_WAIT


def test_no_request_sees_more_than_the_allowed_overtakes():
    rules = replace(RULES, max_wait_s=10_000)  # max_overtakes=2
    run = Run(sections("S", capacity=2), [holding("A", way=1), ask("B", way=2, t=0)], rules=rules)
    granted = []
    for i in range(5):
        run.add(ask(f"C{i}", way=1, t=1 + i))
        for truck in run.step(2 + i):
            granted.append(truck)
            run.release(truck)
    assert granted == ["C0", "C1"]  # then the section is held for B
    assert run.perms["B@S"].overtakes == 2
    run.release("A")
    assert run.step(10) == ["B"]


def test_max_overtakes_rule_is_named():
    rules = replace(RULES, max_wait_s=10_000)
    perms = [ask("B", way=2, t=0, overtakes=2)]
    outcome = decide(sections("S"), perms, at(5), rules)
    assert outcome.decisions[0].rule == RULE_MAX_OVERTAKES


def test_an_unused_grant_expires_and_the_section_frees():
    perms = [holding("A", t=0, entered=False), ask("B", t=1, asked_t=50)]
    outcome = decide(sections("S"), perms, at(59), RULES)
    assert outcome.decisions == []
    outcome = decide(sections("S"), perms, at(61), RULES)
    actions = {(d.key, d.action) for d in outcome.decisions}
    assert actions == {("A@S", EXPIRE_GRANT), ("B@S", GRANT)}
    # A grant in use never expires.
    outcome = decide(sections("S"), [holding("A", entered=True)], at(3600), RULES)
    assert outcome.decisions == []


def test_a_request_not_renewed_is_dropped():
    outcome = decide(sections("S"), [holding("X"), ask("B", t=0)], at(76), RULES)
    assert [(d.key, d.action) for d in outcome.decisions] == [("B@S", EXPIRE_REQUEST)]


def test_two_trucks_facing_each_other_at_the_two_ends_get_it_one_after_the_other():
    run = Run(sections("S"), [ask("EAST", way=1, t=0), ask("WEST", way=2, t=0.5)])
    assert run.step(1) == ["EAST"]
    assert run.step(2) == [] and run.holders() == ["EAST"]
    run.release("EAST")
    assert run.step(3) == ["WEST"]


def ring(n: int) -> tuple[dict[str, Section], list[frozenset]]:
    names = [f"R{i}" for i in range(n)]
    return sections(*names), rings_of([(names[i], names[(i + 1) % n]) for i in range(n)])


def test_rings_are_found_once_each():
    assert rings_of([("a", "b"), ("b", "c"), ("c", "a")]) == [frozenset("abc")]
    assert rings_of([("a", "b"), ("b", "c")]) == []
    square_with_diagonal = [("a", "b"), ("b", "c"), ("c", "d"), ("d", "a"), ("a", "c")]
    assert len(rings_of(square_with_diagonal)) == 3


def test_n_trucks_approaching_a_ring_of_n_sections_never_fill_it():
    for n in (3, 4, 6):
        secs, rings = ring(n)
        asks = [ask(f"T{i}", zone=f"R{i}", t=i) for i in range(n)]
        outcome = decide(secs, asks, at(n + 1), RULES, rings)
        assert len(outcome.granted()) == n - 1
        held_back = [k for k, (_, why) in outcome.waiting.items() if "ring" in why]
        assert held_back == [f"T{n - 1}@R{n - 1}"]


def test_trucks_in_a_ring_keep_moving_round_it():
    """N - 1 trucks circulate in a ring of N: each asks for the next section from inside its
    own, and some truck always gets one (no deadlock), for many laps."""
    n = 4
    secs, rings = ring(n)
    run = Run(secs, [holding(f"T{i}", zone=f"R{i}") for i in range(n - 1)], rings)
    for i in range(n - 1):
        run.add(ask(f"T{i}", zone=f"R{(i + 1) % n}", t=0))
    where = {f"T{i}": i for i in range(n - 1)}
    moves = 0
    for t in range(1, 200):
        granted = run.step(t)
        assert granted, f"deadlock at t={t}"
        for truck in granted:
            here = where[truck]
            run.release(truck, f"R{here}")  # it moves into the next section, leaving this one
            where[truck] = (here + 1) % n
            run.add(ask(truck, zone=f"R{(where[truck] + 1) % n}", t=t))
            moves += 1
        # Never more than N - 1 trucks in the ring, never two in one section.
        occupied = [p.zone for p in run.perms.values() if p.status == GRANTED]
        assert len(occupied) == len(set(occupied))
    assert moves >= 100


def test_an_outsider_gets_into_the_ring_when_a_truck_leaves_it():
    secs, rings = ring(3)
    run = Run(secs, [holding("A", zone="R0"), holding("B", zone="R1"), ask("C", zone="R2")], rings)
    assert run.step(1) == []
    run.release("B", "R1")  # B left the ring
    assert run.step(2) == ["C"]
