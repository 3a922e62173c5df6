"""The API keeps its published contract, whatever it is sent.

schemathesis reads the OpenAPI schema the application serves at ``/api/schema/`` and, for every
operation in it, generates requests from it: first its coverage phase (each parameter and body
field missing, empty, of the wrong type, one past each bound), then random valid ones
(positive) and random ones that break the schema (negative). Each is sent
in-process to the Django application (its WSGI handler) on a transactional test database, so
side effects that wait for the commit run, authenticated as an operator, a supervisor and a
truck in turn. Every answer must:

- never be a server error (5xx);
- carry a status code the schema documents for that operation (the 4xx ones included);
- match the schema's body and content type for that status;
- refuse the negative requests (4xx), and not answer 2xx to a request without credentials.

The operations come from the schema: an endpoint added tomorrow is fuzzed with no change here.
Each operation must be exercised with at least ``MIN_CASES`` generated cases per role.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.auths import AuthStorage
from schemathesis.checks import load_all_checks
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.generation.drivers import CoverageGenerator
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.generation.overrides import Override

from fleet.control import services as control_services
from fleet.learning import services as learning_services
from fleet.pool import services as pool_services
from fleet.telemetry.intake import Inbound
from fleet.telemetry.services import EquipmentDirectory, ingest_batch
from fleet.vehicles.credentials import issue_credentials
from fleet.vehicles.models import Equipment
from tests.factories import haul_truck, truck_message
from tests.learning.conftest import write_checkpoint
from tests.pool.conftest import ETA, FAULT, node_record, replica, slice_heartbeat

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

ROLES = ("operator", "supervisor", "truck")
MIN_CASES = 8
# Per role, operation and mode; negative cases add to the positive ones, and the coverage phase's
# cases (every field missing, of the wrong type, past each bound) come first. Sized for CI's 20
# minutes for the whole of make test: 12 + 6 took 3.8 min for the three roles on 2026-12-07's
# VM (CPU-bound: hypothesis and schemathesis generating), 20 + 10 took 3.5 min on a faster one.
MAX_EXAMPLES = {GenerationMode.POSITIVE: MIN_CASES, GenerationMode.NEGATIVE: 4}


def _checks() -> list[Callable]:
    load_all_checks()
    from schemathesis.specs.openapi import checks

    return [
        schemathesis.checks.not_a_server_error,
        checks.status_code_conformance,
        checks.content_type_conformance,
        checks.response_schema_conformance,
        checks.negative_data_rejection,
        checks.ignored_auth,
    ]


@pytest.fixture
def wsgi_app() -> Iterator[WSGIHandler]:
    """The application as a WSGI server would run it, on the test database's connection: like
    Django's test client, it does not close the connection between requests."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield WSGIHandler()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(wsgi_app):
    return schemathesis.openapi.from_wsgi("/api/schema/", wsgi_app)


@pytest.fixture
def mine(site, operator, supervisor, tmp_path, settings) -> dict[str, Any]:
    """A small but lived-in site: trucks with credentials and history, a command with its
    audit trail, model versions with aliases, an inference pool with nodes."""
    truck = haul_truck(site)
    haul_truck(site, "HT-002")
    credentials = issue_credentials(truck)
    now = datetime.now(UTC)
    inbound = [
        Inbound(
            channel="rest",
            payload=payload,
            received_at=now,
            sender=truck.id,
            decoded=json.loads(payload),
        )
        for payload in (
            truck_message(truck.id, at=now - timedelta(seconds=60 - i), sequence=i)
            for i in range(5)
        )
    ]
    ingest_batch(inbound, EquipmentDirectory(refresh_s=10.0, miss_s=1.0))
    control_services.stop_truck(truck, reason="contract test", actor=operator)

    for version in (1, 2):
        learning_services.register_version(write_checkpoint(tmp_path, "fault-head", version))
    learning_services.promote("fault-head", 1, "champion", by=supervisor)
    learning_services.promote("fault-head", 2, "champion", by=supervisor)

    settings.POOL_PREFIX = f"haulmind-test-pool-{uuid.uuid4().hex[:12]}"
    pool = pool_services.pool_store()
    pool.node_ttl_s = 600.0
    pool.put_deployment(FAULT)
    pool.put_deployment(ETA)
    pool.beat_node(node_record("node-a", ["cpu/0"]))
    pool.beat_slice(slice_heartbeat("node-a", "cpu/0", [replica("fault")]))

    yield {
        "operator": f"Token {Token.objects.create(user=operator).key}",
        "supervisor": f"Token {Token.objects.create(user=supervisor).key}",
        "truck": f"Truck {credentials.api_token}",
        # Path parameters that no list names: a pool node, a model.
        "names": ["node-a", "fault-head"],
    }
    pool.clear()


def _as(header: str) -> AuthStorage:
    """Credentials a case carries: the role's, set the way schemathesis knows them as explicit
    (its ignored_auth check then also replays the request without them, and with bad ones)."""
    storage = AuthStorage()

    @storage.auth(refresh_interval=None)
    class RoleAuth:
        def get(self, case: Any, context: Any) -> str:
            return header

        def set(self, case: Any, data: str, context: Any) -> None:
            case.headers["Authorization"] = data

    return storage


class Keys:
    """Keys of rows that exist, for path parameters: one drawn at random almost never names a
    row, so half the positive cases name one the API has listed. Each list answer (a GET with no
    path parameter) is read for the values of every field; an operation under
    ``/api/v1/zones/{id}/`` then draws ``id`` from what ``/api/v1/zones/`` listed (any field of
    the parameter's name, else ``id``), or from the names the fixture knows."""

    def __init__(self, names: list[str]) -> None:
        self.listed: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
        self.names = names

    def read(self, case: Any, response: Any) -> None:
        if case.method.upper() != "GET" or "{" in case.path or response.status_code != 200:
            return
        with suppress(ValueError):
            self._walk(response.json(), self.listed[case.path])

    def _walk(self, value: Any, into: dict[str, list[Any]]) -> None:
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items if isinstance(value, dict | list) else ():
            if isinstance(item, dict | list):
                self._walk(item, into)
            elif isinstance(key, str) and isinstance(item, str | int) and item not in into[key]:
                into[key].append(item)

    def choose(self, case: Any, data: Any) -> None:
        collection = case.path.split("{", 1)[0]
        for name in list(case.path_parameters):
            listed = self.listed.get(collection, {})
            values = listed.get(name) or listed.get("id") or self.names
            if values and data.draw(st.booleans(), label=f"a listed {name}"):
                case.path_parameters[name] = data.draw(st.sampled_from(values), label=name)


def _exercise(
    operation: Any,
    mode: GenerationMode,
    auth: AuthStorage,
    keys: Keys,
    count: Callable[[int], None],
) -> None:
    checks = _checks()
    # Most cases carry the role's credentials; the others keep the credentials schemathesis
    # generates from the security schemes (garbage, or none), which must be refused with a
    # documented 401 or 403. An operation without parameters has one request per role, so its
    # other cases are those.
    as_role = operation.as_strategy(generation_mode=mode, auth_storage=auth)
    strategy = st.one_of(*[as_role] * 7, operation.as_strategy(generation_mode=mode))

    @settings(
        max_examples=MAX_EXAMPLES[mode],
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: report the first failure
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @given(case=strategy, data=st.data())
    def run(case: Any, data: Any) -> None:
        if mode is GenerationMode.POSITIVE:
            keys.choose(case, data)
        response = case.call_and_validate(checks=checks)
        keys.read(case, response)
        count(response.status_code)

    run()


def _cover(operation: Any, auth: AuthStorage, keys: Keys, count: Callable[[int], None]) -> None:
    """schemathesis' coverage phase: deterministic cases at each parameter's edges (missing,
    empty, the wrong type, one past each bound), where random draws rarely land."""
    config = operation.schema.config.generation_for(operation=operation, phase="coverage")
    generator = CoverageGenerator(
        operation=operation,
        generation_modes=list(GenerationMode),
        generation_config=config,
        auth_storage=auth,
        override=Override(),
        feedback=FeedbackSources(),
    )
    checks = _checks()
    for case in generator:
        response = case.call_and_validate(checks=checks)
        keys.read(case, response)
        count(response.status_code)


@pytest.mark.parametrize("role", ROLES)
def test_every_operation_keeps_its_contract(role, api_schema, mine):
    auth = _as(mine[role])
    keys = Keys(mine["names"])
    cases: Counter[str] = Counter()
    answered: dict[str, Counter[int]] = defaultdict(Counter)
    failures: dict[str, str] = {}
    operations = [
        result.ok() for result in api_schema.get_all_operations() if isinstance(result, Ok)
    ]
    assert operations, "the schema has no operations"
    for operation in operations:
        label = operation.label

        def count(status: int, label: str = label) -> None:
            cases[label] += 1
            answered[label][status] += 1

        try:
            _cover(operation, auth, keys, count)
        except (Exception, FailureGroup) as error:  # every operation's failure is reported
            failures[label] = f"coverage: {error}"
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _exercise(operation, mode, auth, keys, count)
            except Unsatisfiable:
                continue  # nothing in this operation can be made invalid
            except (Exception, FailureGroup) as error:  # every operation's failure is reported
                failures.setdefault(label, f"{mode}: {error}")
                break

    report = "\n".join(
        f"{cases[op.label]:5d}  {op.label:50s} {dict(sorted(answered[op.label].items()))}"
        for op in operations
    )
    print(f"\ncases per operation as {role}:\n{report}")
    assert not failures, f"{len(failures)} operations broke their contract as {role}:\n\n" + (
        "\n\n".join(f"--- {label}\n{message}" for label, message in failures.items())
    )
    short = {op.label: cases[op.label] for op in operations if cases[op.label] < MIN_CASES}
    assert not short, f"operations exercised with fewer than {MIN_CASES} cases: {short}"


@pytest.mark.parametrize(
    ("url", "parameter"),
    [
        ("/api/v1/commands/?limit=abc", "limit"),
        ("/api/v1/commands/?equipment=not-a-uuid", "equipment"),
        ("/api/v1/trucks/?site=nope", "site"),
        ("/api/v1/equipment/?limit=-1", "limit"),
        ("/api/v1/trucks/{truck}/positions/?from=yesterday", "from"),
        ("/api/v1/trucks/{truck}/track/?from=2026-11-22T10:00:00Z&simplify=far", "simplify"),
        ("/api/v1/trucks/in-area/?area=square", "area"),
        ("/api/v1/sites/{site}/map/?revision=latest", "revision"),
    ],
)
def test_a_malformed_query_parameter_is_a_400_naming_it(url, parameter, api_client, mine):
    api_client.credentials(HTTP_AUTHORIZATION=mine["operator"])
    truck = Equipment.objects.get(name="HT-001")
    response = api_client.get(url.format(truck=truck.id, site=truck.site_id))

    assert response.status_code == 400, response.content
    assert parameter in response.json()
