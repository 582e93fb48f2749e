"""A demand hint published at a machinetype's `demand_url`, read by the real cycle (a local file here;
an https URL goes through the same cached fetcher as the pipes)."""

import json

import pytest

from vacagent import demand
from vacagent.errors import ConfigError

from conftest import T0
from test_cycle import Lab


def lab_with_hint(tmp_path, doc):
    hint = tmp_path / "demand.json"
    hint.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    script = tmp_path / "ud"
    script.write_text("x")
    types = {"a": {"user_data": str(script), "backoff_seconds": 100, "fizzle_seconds": 60,
                   "demand_url": str(hint)}}
    return Lab(tmp_path, machinetypes=types, processors_limit=20, budget=10)


@pytest.mark.parametrize(
    "doc, made",
    [
        ({"waiting": 3}, 3),                        # fresh (counted when fetched): bounds creation
        ({"waiting": 3, "time": T0 - 30}, 3),
        ({"waiting": 0}, 0),
        ({"waiting": 3, "time": T0 - 3600}, 10),    # stale: ignored, the budget decides
        ("not json", 10),                           # unreadable: no hint (and a warning)
        ({"waiting": -1}, 10),
    ],
)
def test_a_demand_url_bounds_creation_when_fresh(tmp_path, doc, made):
    lab = lab_with_hint(tmp_path, doc)
    d = lab.cycle()
    assert len(d["created"].get("a", [])) == made
    if made < 10:
        assert d["held"]["a"].startswith("demand:")


@pytest.mark.parametrize(
    "text, reason",
    [("[]", "want"), ('{"waiting": true}', "want"), ('{"waiting": 2, "time": "noon"}', "Unix seconds"),
     ("{", "not JSON")],
)
def test_a_bad_demand_document_is_named(text, reason):
    with pytest.raises(ConfigError, match=f"hint.json: demand hint: .*{reason}"):
        demand.read(text, "hint.json", T0)
