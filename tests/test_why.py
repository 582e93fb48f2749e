"""`vacagent why`: which rule held a machinetype back, and for how long."""

from vacagent.status import held_since, rule

from conftest import T0


def record(t, **held):
    return {"time": T0 + t, "held": held}


def test_rule_is_the_reasons_first_word():
    assert rule("backoff until 2030-01-01T00:00:00Z after 1 consecutive abort(s)") == "backoff"
    assert rule("looking: 2 machine(s) up and still looking for work") == "looking"
    assert rule("demand: 0 job(s) waiting") == "demand"


def test_held_since_goes_back_while_the_same_rule_holds():
    history = [
        record(0, a="ramp: 2 machine(s) this cycle"),
        record(60, a="looking: 1 machine(s) up"),
        record(120, a="backoff until X", b="looking: 3 machine(s) up"),
        record(180, a="backoff until Y", b="looking: 1 machine(s) up"),
        record(240, a="backoff until Y"),
    ]
    assert held_since(history, 4, "a") == T0 + 120  # the backoff's text changed, not its rule
    assert held_since(history, 3, "b") == T0 + 120
    assert held_since(history, 1, "a") == T0 + 60
