"""The reconciler's scheduling rules, driven by a fake clock: what is due when, which
companions a run takes, backoff growth and caps, resync, exclusion, and watch backoff."""

from __future__ import annotations

import pytest
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.schedule import (
    HOLD_CAP,
    NOT_DONE_CAP,
    WATCH_BACKOFF_CAP,
    Outcome,
    Run,
    Schedule,
    Servers,
    Timing,
    WatchRetry,
    Write,
    backoff,
)

OK = Outcome(failed=False)
FAILED = Outcome(failed=True)
PENDING = Outcome(failed=False, not_done=("myservice",))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@pytest.fixture
def clock():
    return Clock()


def schedule(clock: Clock, *, nodes=("node0", "node1", "node2"), **timing) -> Schedule:
    return Schedule(nodes, timing=Timing(**{"debounce": 0.2, "resync": 60.0, "max_backoff": 60.0, **timing}),
                    now=clock.now)


def finish(s: Schedule, run: Run, clock: Clock, outcome: Outcome = OK,
           written: frozenset[Write] = frozenset()) -> dict[str, float]:
    return s.finished(run, now=clock.now, outcomes=dict.fromkeys(run.members, outcome), written=written)


def w(uid: str, version: int) -> Write:
    return Write(uid=uid, version=str(version))


# -- debounce ------------------------------------------------------------------------------------
def test_a_change_is_due_after_the_debounce_and_not_before(clock):
    s = schedule(clock)
    assert s.take(now=clock.now) == []
    s.changed("node1", now=clock.now)
    assert s.due("node1") == pytest.approx(clock.now + 0.2)
    assert s.take(now=clock.advance(0.1)) == []
    assert s.wait(now=clock.now) == pytest.approx(0.1)
    assert s.take(now=clock.advance(0.1)) == [Run("node1")]
    assert s.due("node1") is None


def test_a_burst_of_changes_is_one_run_at_the_first_changes_deadline(clock):
    s = schedule(clock)
    first = clock.now
    for _round in range(5):
        s.changed("node0", now=clock.now)
        clock.advance(0.05)
    assert s.due("node0") == pytest.approx(first + 0.2)  # later events do not postpone it
    assert s.take(now=first + 0.2) == [Run("node0")]
    assert s.take(now=first + 1) == []


# -- exclusion -----------------------------------------------------------------------------------
def test_a_busy_node_is_not_taken_again_until_its_run_ended(clock):
    s = schedule(clock)
    s.changed("node0", now=clock.now)
    (run,) = s.take(now=clock.advance(1))
    s.changed("node0", now=clock.now)  # a change during its run
    assert s.take(now=clock.advance(1)) == []
    assert s.busy("node0") and s.pending == 1
    finish(s, run, clock)
    assert s.take(now=clock.now) == [Run("node0")]


def test_a_node_is_never_in_two_runs_even_as_a_companion(clock):
    s = schedule(clock)
    s.changed("node0", now=clock.now)  # the server's own run
    (server_run,) = s.take(now=clock.advance(1))
    s.changed("node1", now=clock.now, companion="node0")  # a joiner of node0's network
    (join_run,) = s.take(now=clock.advance(1))
    assert join_run == Run("node1")  # node0 is busy: not taken along
    assert set(server_run.members).isdisjoint(join_run.members)


def test_parallel_runs_are_capped_and_the_rest_waits(clock):
    s = schedule(clock, parallel_runs=2)
    for node in ("node0", "node1", "node2"):
        s.changed(node, now=clock.now)
    runs = s.take(now=clock.advance(1))
    assert [r.node for r in runs] == ["node0", "node1"]
    assert s.running == 2 and s.pending == 1
    assert s.take(now=clock.advance(1)) == []
    finish(s, runs[0], clock)
    assert s.take(now=clock.now) == [Run("node2")]


# -- echoes: a run's own writes ---------------------------------------------------------------
def test_the_echoes_of_a_nodes_own_run_start_no_run(clock):
    s = schedule(clock)
    s.changed("node0", now=clock.now, write=w("svc", 10))  # the user's apply
    (run,) = s.take(now=clock.advance(1))
    for version in (11, 12, 13):  # its status, peers and finalizer come back through the watch
        s.changed("node0", now=clock.advance(0.3), write=w("svc", version))
    s.changed("node0", now=clock.now, write=w("pod", 14))  # the pod's label
    finish(s, run, clock, written=frozenset({w("svc", 11), w("svc", 12), w("svc", 13), w("pod", 14),
                                             w("domain", 15)}))
    # The registry's echo comes after the run ended.
    assert s.changed("node0", now=clock.advance(0.1), write=w("domain", 15)) is False
    assert s.pending == 0 and s.take(now=clock.advance(5)) == []


def test_a_change_during_the_run_that_is_no_echo_waits_only_for_the_rest_of_it(clock):
    s = schedule(clock)
    s.changed("node0", now=clock.now, write=w("svc", 10))
    (run,) = s.take(now=clock.advance(1))
    s.changed("node0", now=clock.advance(0.5), write=w("svc", 11))  # the run's own write
    s.changed("node0", now=clock.advance(0.5), write=w("joiner", 12), companion="node1")  # a join
    s.changed("node0", now=clock.advance(0.5), write=w("svc", 13))  # the run's own write
    assert s.take(now=clock.advance(3)) == []  # busy
    finish(s, run, clock, written=frozenset({w("svc", 11), w("svc", 13)}))
    # Due at once (the join's own time plus the debounce has passed), with its companion.
    assert s.take(now=clock.now) == [Run("node0", ("node1",))]


def test_a_write_by_another_nodes_run_is_a_change(clock):
    s = schedule(clock)
    s.changed("node1", now=clock.now)
    (run,) = s.take(now=clock.advance(1))  # node1 alone claims an address on node0's hub
    s.changed("node0", now=clock.advance(0.2), write=w("hub", 20))
    finish(s, run, clock, written=frozenset({w("hub", 20)}))
    assert s.take(now=clock.advance(1)) == [Run("node0")]


def test_an_event_is_an_echo_only_of_the_last_run_of_its_node(clock):
    s = schedule(clock)
    s.changed("node0", now=clock.now)
    (run,) = s.take(now=clock.advance(1))
    finish(s, run, clock, written=frozenset({w("svc", 11)}))
    assert s.changed("node0", now=clock.now, write=w("svc", 11)) is False
    assert s.changed("node0", now=clock.now, write=w("svc", 12)) is True  # the user's next edit
    (run,) = s.take(now=clock.advance(1))
    finish(s, run, clock, written=frozenset({w("svc", 13)}))
    assert s.changed("node0", now=clock.now, write=w("svc", 11)) is True


def test_a_list_and_the_changes_held_during_a_crashed_run_always_count(clock):
    s = schedule(clock)
    s.changed("node0", now=clock.now)
    (run,) = s.take(now=clock.advance(1))
    s.changed("node0", now=clock.now, write=w("svc", 11))
    s.finished(run, now=clock.advance(1), outcomes={})  # crashed: nothing known of its writes
    assert s.due("node0") is not None
    (run,) = s.take(now=clock.advance(2))
    finish(s, run, clock, written=frozenset({w("svc", 12)}))
    assert s.changed("node0", now=clock.now) is True  # a fresh LIST
    assert s.due("node0") is not None


def test_a_companion_ignores_the_echoes_of_the_joint_run(clock):
    s = schedule(clock)
    s.changed("node1", now=clock.now, companion="node0")
    (run,) = s.take(now=clock.advance(1))
    assert run == Run("node1", ("node0",))
    s.changed("node0", now=clock.advance(0.5), write=w("hub", 30))
    s.changed("node1", now=clock.now, write=w("joiner", 31))
    finish(s, run, clock, written=frozenset({w("hub", 30), w("joiner", 31)}))
    assert s.pending == 0


def test_a_run_says_why_it_started(clock):
    s = schedule(clock, resync=30)
    s.changed("node0", now=clock.now)
    (run,) = s.take(now=clock.advance(1))
    assert run.cause == "change"
    finish(s, run, clock, FAILED)
    (run,) = s.take(now=clock.advance(1))
    assert run.cause == "retry"
    finish(s, run, clock)
    assert {r.cause for r in s.take(now=clock.advance(30))} == {"resync"}


def test_write_of_reads_an_objects_version():
    assert Write.of({"metadata": {"uid": "u", "resourceVersion": "7"}}) == Write("u", "7")
    assert Write.of({"metadata": {"name": "n"}}) is None
    assert Write.of({}) is None


# -- companions ----------------------------------------------------------------------------------
def test_a_companion_joins_the_run_and_its_own_due_is_served_by_it(clock):
    s = schedule(clock)
    s.changed("node0", now=clock.now)
    s.changed("node1", now=clock.now, companion="node0")
    # Both due at once: one joint run, not node0's own run beside a run of node1 without it.
    assert s.take(now=clock.advance(1)) == [Run("node1", ("node0",))]
    assert s.busy("node0") and s.due("node0") is None


def test_a_busy_companion_is_left_out_and_not_remembered(clock):
    s = schedule(clock)
    s.changed("node0", now=clock.now)
    (server_run,) = s.take(now=clock.advance(1))
    s.changed("node1", now=clock.now, companion="node0")
    s.changed("node1", now=clock.now)
    (alone,) = s.take(now=clock.advance(1))
    assert alone == Run("node1")
    finish(s, server_run, clock)
    finish(s, alone, clock, PENDING)
    # The companion is not remembered past the run that could not take it.
    (again,) = s.take(now=clock.advance(2))
    assert again == Run("node1")


def test_a_due_companion_taken_along_is_not_run_again(clock):
    s = schedule(clock)
    s.changed("node1", now=clock.now, companion="node0")
    s.changed("node0", now=clock.advance(0.1))
    (run,) = s.take(now=clock.advance(1))
    assert run == Run("node1", ("node0",))
    assert s.due("node0") is None
    finish(s, run, clock)
    assert s.pending == 0 and s.take(now=clock.advance(1)) == []


def test_a_companion_needing_a_node_the_run_lacks_keeps_its_own_run(clock):
    s = schedule(clock)
    s.changed("node2", now=clock.now, companion="node0")  # node2 joins node0's network
    s.changed("node1", now=clock.now, companion="node2")  # node1 joins node2's network
    runs = s.take(now=clock.advance(1))
    assert Run("node1", ("node2",)) in runs
    assert s.due("node2") is not None  # its change needs node0, which node1's run did not take


def test_companions_are_forgotten_after_the_run_and_unknown_ones_ignored(clock):
    s = schedule(clock)
    s.changed("node1", now=clock.now, companion="node0")
    s.changed("node1", now=clock.now, companion="elsewhere")
    s.changed("node1", now=clock.now, companion="node1")
    (run,) = s.take(now=clock.advance(1))
    assert run == Run("node1", ("node0",))
    finish(s, run, clock)
    s.changed("node1", now=clock.now)
    assert s.take(now=clock.advance(1)) == [Run("node1")]


def test_a_failed_companion_is_requeued_on_its_own(clock):
    s = schedule(clock)
    s.changed("node1", now=clock.now, companion="node0")
    (run,) = s.take(now=clock.advance(1))
    retries = s.finished(run, now=clock.now, outcomes={"node1": OK, "node0": FAILED})
    assert retries == {"node0": 1.0}
    assert s.take(now=clock.advance(1)) == [Run("node0")]


# -- backoff -------------------------------------------------------------------------------------
def test_failures_back_off_exponentially_up_to_max_backoff(clock):
    s = schedule(clock, max_backoff=20, resync=10_000)
    waits = []
    s.changed("node0", now=clock.now)
    for _round in range(7):
        clock.advance(100)
        (run,) = s.take(now=clock.now)
        waits.append(finish(s, run, clock, FAILED)["node0"])
        assert s.due("node0") == pytest.approx(clock.now + waits[-1])
        assert s.take(now=clock.now + waits[-1] - 0.01) == []
    assert waits == [1, 2, 4, 8, 16, 20, 20]


def test_a_success_resets_the_backoff(clock):
    s = schedule(clock, resync=10_000)
    s.changed("node0", now=clock.now)
    for outcome, expected in [(FAILED, 1), (FAILED, 2), (OK, None), (FAILED, 1)]:
        (run,) = s.take(now=clock.advance(100))
        assert finish(s, run, clock, outcome).get("node0") == expected
        if expected is None:
            assert s.due("node0") is None
            s.changed("node0", now=clock.now)


def test_not_done_backs_off_exponentially_up_to_its_own_cap(clock):
    s = schedule(clock, resync=10_000)
    s.changed("node1", now=clock.now)
    waits = []
    for _round in range(6):
        (run,) = s.take(now=clock.advance(100))
        waits.append(finish(s, run, clock, PENDING)["node1"])
    assert waits == [1, 2, 4, 8, NOT_DONE_CAP, NOT_DONE_CAP]


def test_not_done_is_capped_by_a_smaller_max_backoff(clock):
    s = schedule(clock, max_backoff=3, resync=10_000)
    s.changed("node1", now=clock.now)
    waits = []
    for _round in range(4):
        (run,) = s.take(now=clock.advance(100))
        waits.append(finish(s, run, clock, PENDING)["node1"])
    assert waits == [1, 2, 3, 3]


def test_an_event_during_backoff_runs_the_node_sooner(clock):
    s = schedule(clock, resync=10_000)
    s.changed("node0", now=clock.now)
    for _round in range(5):
        (run,) = s.take(now=clock.advance(100))
        finish(s, run, clock, FAILED)
    assert s.due("node0") == pytest.approx(clock.now + 16)
    s.changed("node0", now=clock.now)
    assert s.take(now=clock.advance(0.2)) == [Run("node0")]


def test_backoff_rule():
    assert [backoff(attempt=n, first=1, cap=30) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff(attempt=10_000, first=0.5, cap=60) == 60


# -- resync --------------------------------------------------------------------------------------
def test_every_node_is_resynced_each_period(clock):
    start = clock.now
    s = schedule(clock, resync=60)
    assert s.wait(now=clock.now) == pytest.approx(60)
    assert s.take(now=start + 59.9) == []
    runs = s.take(now=start + 60)
    assert [r.node for r in runs] == ["node0", "node1", "node2"]
    for run in runs:
        finish(s, run, clock)
    assert s.take(now=start + 119.9) == []
    assert s.wait(now=start + 100) == pytest.approx(20)
    assert len(s.take(now=start + 120)) == 3


def test_a_resync_waits_for_a_busy_node(clock):
    start = clock.now
    s = schedule(clock, resync=60)
    s.changed("node0", now=clock.now)
    (run,) = s.take(now=start + 59)
    assert [r.node for r in s.take(now=start + 60)] == ["node1", "node2"]
    assert s.due("node0") == pytest.approx(start + 60)
    finish(s, run, clock)
    assert s.take(now=start + 61) == [Run("node0")]


def test_a_resync_serves_a_pending_change_under_its_own_cause(clock):
    start = clock.now
    s = schedule(clock, resync=60, debounce=0.2)
    s.changed("node0", now=start + 59.9, what="dtservices/solo@7 ADDED")
    runs = {r.node: r for r in s.take(now=start + 60)}
    assert set(runs) == {"node0", "node1", "node2"}
    assert (runs["node0"].cause, runs["node0"].because) == ("change", "dtservices/solo@7 ADDED")
    assert {runs["node1"].cause, runs["node2"].cause} == {"resync"}


def test_a_change_during_a_run_names_the_run_a_resync_made_due_meanwhile(clock):
    start = clock.now
    s = schedule(clock, resync=60)
    s.changed("node0", now=start)
    (run,) = s.take(now=start + 1)
    for other in s.take(now=start + 60):
        finish(s, other, clock)
    s.changed("node0", now=start + 61, what="dtservices/solo@8 ADDED")
    finish(s, run, clock)
    (run,) = s.take(now=start + 62)
    assert (run.node, run.cause, run.because) == ("node0", "change", "dtservices/solo@8 ADDED")


# -- which node serves a network -----------------------------------------------------------------
def server_object(name: str) -> dict:
    return {"metadata": {"name": name}, "spec": {"domainSelector": "d", "podSelector": "p"},
            "peers": {"100.96.0.1": {"labels": {"sid.sightline.dtservice.ab": "server"}, "publicKey": "k"}}}


def client_object(name: str) -> dict:
    return {"metadata": {"name": name}, "spec": {"server": {"endpoint": "198.18.0.10:51820"}},
            "peers": {"100.96.0.2": {"labels": {"sid.sightline.dtservice.cd": "client"}}}}


def test_the_server_of_a_network_is_learnt_and_named_for_its_joiners():
    servers = Servers()
    assert servers.learn("node0", event="ADDED", obj=server_object("net")) is None
    assert servers.learn("node1", event="ADDED", obj=client_object("net")) == "node0"
    assert servers.learn("node1", event="DELETED", obj=client_object("net")) == "node0"
    assert servers.learn("node2", event="ADDED", obj=client_object("other")) is None
    assert servers.learn("node0", event="DELETED", obj=server_object("net")) is None
    assert servers.server("net") is None


def test_a_fresh_list_forgets_what_a_node_no_longer_serves():
    servers = Servers()
    servers.learn("node0", event="ADDED", obj=server_object("gone"))
    servers.learn("node0", event="ADDED", obj=server_object("kept"))
    servers.relisted("node0", [server_object("kept"), client_object("joined")])
    assert servers.server("gone") is None
    assert servers.server("kept") == "node0"


# -- watch errors --------------------------------------------------------------------------------
def test_a_failing_watch_backs_off_exponentially_up_to_the_cap(clock):
    retry = WatchRetry()
    delays = [retry.failed(now=clock.advance(1)).delay for _round in range(8)]
    assert delays == [1, 2, 4, 8, 16, WATCH_BACKOFF_CAP, WATCH_BACKOFF_CAP, WATCH_BACKOFF_CAP]
    assert min(delays) > 0  # never a tight loop


def test_a_first_expiry_lists_again_at_once_but_repeated_ones_back_off(clock):
    retry = WatchRetry()
    assert retry.failed(now=clock.now, expired=True).delay == 0
    assert [retry.failed(now=clock.now, expired=True).delay for _round in range(3)] == [1, 2, 4]


def test_a_stream_closed_at_once_is_a_failure_but_a_long_or_busy_one_is_healthy(clock):
    retry = WatchRetry()
    started = clock.now
    step = retry.ended(now=clock.advance(0.1), started=started, delivered=False)
    assert step is not None and step.delay == 1
    assert retry.ended(now=clock.advance(0.1), started=started, delivered=False).delay == 2
    assert retry.ended(now=clock.now, started=started, delivered=True) is None
    assert retry.failures == 0
    assert retry.ended(now=clock.advance(300), started=clock.now - 300, delivered=False) is None


def test_recovery_resets_the_backoff_and_reports_the_failures(clock):
    retry = WatchRetry()
    for _round in range(4):
        retry.failed(now=clock.now)
    assert retry.recovered() == 4
    assert retry.failed(now=clock.now).delay == 1
    assert retry.recovered() == 1 and retry.recovered() == 0


def test_a_long_outage_logs_the_first_failure_each_step_and_then_rarely(clock):
    retry = WatchRetry(remind_every=300)
    logged, quiet = [], []
    for _round in range(200):  # about an hour and a half at the cap
        step = retry.failed(now=clock.now)
        if step.log:
            logged.append(step.delay)
            quiet.append(step.quiet)
        clock.advance(step.delay)
    assert logged[:6] == [1, 2, 4, 8, 16, 30]
    assert len(logged) <= 6 + (200 * 30) // 300 + 1
    assert all(delay == WATCH_BACKOFF_CAP for delay in logged[6:])
    assert quiet[0] == 0 and max(quiet) >= 9  # the reminders say how many retries went unlogged


def test_an_event_that_only_records_a_tunnels_health_is_not_worth_a_run():
    from ansible_collections.sightline.dtservice.plugins.module_utils.contract import (
        HANDSHAKE_ANNOTATION,
        PEERS_ANNOTATION,
    )
    from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.schedule import Seen

    def version(rv: str, annotations: dict, status: str = "Connected") -> dict:
        return {"metadata": {"name": "myservice", "resourceVersion": rv, "annotations": annotations,
                             "managedFields": [{"manager": rv}]}, "spec": {"podSelector": "p"}, "status": status}

    seen = Seen()
    seen.relisted("node0", [version("1", {})])
    assert not seen.worth_a_run("node0", event="MODIFIED", obj=version("2", {PEERS_ANNOTATION: "1"}))
    assert not seen.worth_a_run("node0", event="MODIFIED", obj=version(
        "3", {PEERS_ANNOTATION: "1", HANDSHAKE_ANNOTATION: "2027-01-15T08:00:00Z"}))
    assert seen.worth_a_run("node0", event="MODIFIED", obj=version("4", {PEERS_ANNOTATION: "1"}, "Failed"))
    assert seen.worth_a_run("node0", event="MODIFIED", obj=version("5", {PEERS_ANNOTATION: "1", "user": "x"}, "Failed"))
    assert seen.worth_a_run("node1", event="MODIFIED", obj=version("6", {})), "never seen: served"
    assert seen.worth_a_run("node0", event="DELETED", obj=version("7", {}))
    assert seen.worth_a_run("node0", event="ADDED", obj=version("8", {}))


# -- failover: a leaving hub's network in one run, a grace that runs out ----------------------------
def deleting(obj: dict) -> dict:
    return {**obj, "metadata": {**obj["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}}


def test_a_hub_being_deleted_brings_every_other_node_of_its_network():
    servers = Servers()
    servers.learn("node0", event="ADDED", obj=server_object("net"))
    servers.learn("node1", event="ADDED", obj=client_object("net"))
    servers.learn("node2", event="ADDED", obj=client_object("net"))
    servers.learn("node2", event="ADDED", obj=client_object("other"))
    assert servers.hub_leaving("node0", event="MODIFIED", obj=server_object("net")) == ()
    assert servers.hub_leaving("node1", event="MODIFIED", obj=deleting(client_object("net"))) == ()
    assert servers.hub_leaving("node0", event="MODIFIED", obj=deleting(server_object("net"))) == ("node1", "node2")
    # Once per deletion: further events of the same deletion bring nobody.
    assert servers.hub_leaving("node0", event="MODIFIED", obj=deleting(server_object("net"))) == ()
    assert servers.hub_leaving("node0", event="DELETED", obj=server_object("net")) == ()
    # A deletion first seen when it is over (the daemon was not watching) brings them all.
    assert servers.hub_leaving("node0", event="DELETED", obj=server_object("net")) == ("node1", "node2")
    assert servers.networks_of("node0") == ("node1", "node2")
    servers.relisted("node2", [])
    assert servers.networks_of("node0") == ("node1",)


def test_a_leaving_hubs_run_takes_every_companion(clock):
    s = schedule(clock)
    s.changed("node0", now=clock.now, companions=("node1", "node2", "elsewhere"))
    clock.advance(0.2)
    assert s.take(now=clock.now) == [Run("node0", ("node1", "node2"))]


def test_a_failover_due_later_runs_the_hub_and_its_network_then(clock):
    s = schedule(clock)
    s.recheck("node0", now=clock.now, after=5.0, companions=("node1",))
    assert s.due("node0") == clock.now + 5.0
    assert s.take(now=clock.advance(4.9)) == []
    assert s.take(now=clock.advance(0.1)) == [Run("node0", ("node1",))]


def test_a_failovers_run_waits_for_its_busy_companions(clock):
    s = schedule(clock)
    s.changed("node1", now=clock.now)
    clock.advance(0.2)
    [busy] = s.take(now=clock.now)
    s.changed("node0", now=clock.now, companions=("node1", "node2"))
    clock.advance(0.2)
    assert s.take(now=clock.now) == []  # node1 is still in its own run
    assert s.wait(now=clock.now) > 1
    s.finished(busy, now=clock.advance(2), outcomes={"node1": OK})
    assert s.take(now=clock.now) == [Run("node0", ("node1", "node2"))]


def test_a_held_run_goes_without_its_busy_companions_at_the_cap(clock):
    s = schedule(clock)
    s.changed("node1", now=clock.now)
    [_busy] = s.take(now=clock.advance(0.2))
    s.recheck("node0", now=clock.now, after=1.0, companions=("node1",))
    assert s.take(now=clock.advance(1.0)) == []
    assert s.take(now=clock.advance(HOLD_CAP)) == [Run("node0", ())]
