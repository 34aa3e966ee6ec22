"""KeptValues: what a tracked read may keep, and when a kept value must go."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from adapters.redis.tracking import KeptValues


def live(kept: int = 100) -> KeptValues:
    values = KeptValues(kept=kept)
    values.live = True
    return values


def test_a_value_read_is_served_until_its_key_is_reported() -> None:
    values = live()
    stamp = values.stamp()
    values.put("p:1", "one", stamp)
    assert values.get("p:1") == "one"
    values.forget(["p:1"])
    assert values.get("p:1") is None


def test_a_read_that_began_before_a_report_of_its_key_is_not_kept() -> None:
    values = live()
    stamp = values.stamp()
    values.forget(["p:1"])  # the write was reported while the read was out: its value may be older
    values.put("p:1", "maybe stale", stamp)
    assert values.get("p:1") is None


def test_a_report_of_another_key_does_not_stop_a_read_from_being_kept() -> None:
    values = live()
    stamp = values.stamp()
    values.forget(["p:2"])
    values.put("p:1", "one", stamp)
    assert values.get("p:1") == "one"


def test_a_read_that_began_after_the_report_is_kept() -> None:
    values = live()
    values.forget(["p:1"])
    values.put("p:1", "new", values.stamp())
    assert values.get("p:1") == "new"


def test_nothing_is_kept_or_served_while_tracking_is_down_nor_from_reads_before_it_came_back() -> None:
    values = live()
    values.put("p:1", "one", values.stamp())
    values.live = False
    assert values.get("p:1") is None
    values.put("p:2", "two", values.stamp())
    stamp = values.stamp()
    values.forget_all()  # what going live again does
    values.live = True
    values.put("p:3", "read before tracking was back", stamp)
    assert values.get("p:2") is None
    assert values.get("p:3") is None


def test_a_flush_forgets_everything_and_every_read_out() -> None:
    values = live()
    values.put("p:1", "one", values.stamp())
    stamp = values.stamp()
    values.forget_all()
    values.put("p:2", "two", stamp)
    assert values.get("p:1") is None
    assert values.get("p:2") is None
    assert len(values) == 0


def test_reports_forgotten_for_room_make_older_reads_unkeepable() -> None:
    values = live(kept=2)
    stamp = values.stamp()
    values.forget(["p:1"])
    values.forget(["p:2"])
    values.forget(["p:3"])  # p:1's report is dropped: its read must not be kept all the same
    values.put("p:1", "maybe stale", stamp)
    assert values.get("p:1") is None


def test_at_most_kept_values_the_oldest_go_first() -> None:
    values = live(kept=2)
    for key in ("a", "b", "c"):
        values.put(key, key.upper(), values.stamp())
    assert [values.get("a"), values.get("b"), values.get("c")] == [None, "B", "C"]


@given(
    st.lists(
        st.tuples(st.sampled_from(["read", "write", "arrive", "flush"]), st.sampled_from("abc")),
        max_size=40,
    )
)
def test_a_kept_value_is_never_older_than_the_last_write_reported_before_it_is_served(
    steps: list[tuple[str, str]],
) -> None:
    """Model: the store holds a version per key; a read takes the store's version when it starts
    and arrives later (any order); a served value must be the store's current version whenever
    every write so far has been reported (reports here are at once)."""
    values = live(kept=3)
    store = dict.fromkeys("abc", 0)
    out: list[tuple[str, int, int]] = []  # key, version read, stamp
    for action, key in steps:
        if action == "read":
            out.append((key, store[key], values.stamp()))
        elif action == "write":
            store[key] += 1
            values.forget([key])
        elif action == "arrive" and out:
            read_key, version, stamp = out.pop(0)
            values.put(read_key, str(version), stamp)
        elif action == "flush":
            values.forget_all()
        for k in "abc":
            served = values.get(k)
            assert served is None or int(served) == store[k]
