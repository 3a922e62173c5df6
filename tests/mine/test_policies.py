import math

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given
from hypothesis import strategies as st

from fleet.mine.policies import validate_policies


def reasons(policies) -> str:
    with pytest.raises(ValidationError) as refused:
        validate_policies(policies)
    return " | ".join(refused.value.messages)


def test_it_accepts_every_published_policy():
    owner = "7F1B1E2C-0000-4000-8000-000000000001"
    policies = {
        "speedLimit": {"type": "absolute", "value": 8.3},
        "lowTraction": {},
        "roughRoad": {},
        "controlledAccess": {"ownerId": owner},
        "trafficPermission": {},
    }
    assert validate_policies(policies)["controlledAccess"] == {"ownerId": owner.lower()}
    assert validate_policies({"exclusion": {}}) == {"exclusion": {}}


def test_it_reads_a_numeric_string_as_a_number():
    assert validate_policies({"speedLimit": {"type": "percent", "value": " 50 "}}) == {
        "speedLimit": {"type": "percent", "value": 50.0}
    }


def test_it_refuses_an_unknown_policy_naming_the_known_ones():
    assert "unknown policy 'teleport'; expected one of exclusion, speedLimit" in reasons(
        {"teleport": {}}
    )


def test_it_refuses_a_negative_speed_limit():
    assert "speedLimit.value must not be negative, got -5" in reasons(
        {"speedLimit": {"type": "absolute", "value": -5}}
    )


def test_it_refuses_an_absolute_limit_that_looks_like_kmh():
    assert "absolute limits are in metres per second" in reasons(
        {"speedLimit": {"type": "absolute", "value": 120}}
    )


@pytest.mark.parametrize("value", [math.nan, math.inf, "NaN", True, None, [1]])
def test_it_refuses_a_speed_limit_that_is_not_a_finite_number(value):
    assert "speedLimit.value" in reasons({"speedLimit": {"type": "absolute", "value": value}})


def test_it_lists_every_problem_at_once():
    text = reasons({"speedLimit": {"type": "fast", "value": 1}, "roughRoad": {"level": 3}, "x": {}})
    assert (
        "speedLimit.type" in text
        and "roughRoad takes no parameters" in text
        and "unknown policy 'x'" in text
    )


def test_exclusion_cannot_be_combined():
    assert "cannot be combined" in reasons({"exclusion": {}, "roughRoad": {}})


def test_a_zone_needs_a_policy():
    assert "at least one policy" in reasons({})


@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.text(max_size=5),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=12), c, max_size=3),
        max_leaves=8,
    )
)
def test_any_json_is_either_normalised_or_refused_with_a_reason(value):
    try:
        result = validate_policies(value)
    except ValidationError as exc:
        assert exc.messages and all(isinstance(m, str) and m for m in exc.messages)
    else:
        assert validate_policies(result) == result  # normalised output is a fixed point
