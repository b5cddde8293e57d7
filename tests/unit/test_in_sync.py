"""Which replicas of a volume hold every acknowledged write, as nodes go down (replication/layout)."""

from meshblock.model import Replica, ReplicaState, Volume
from meshblock.replication.layout import in_sync_after, recorded_in_sync

ON, OFF = ReplicaState.ONLINE, ReplicaState.OFFLINE


def vol(in_sync=()):
    return Volume(id="v", name="v", replicas=3, in_sync=list(in_sync))


def reps(*states):
    return [Replica(id=f"r{i}", volume_id="v", node_id=f"n{i}", state=s) for i, s in enumerate(states)]


def test_recorded_set_falls_back_to_online_replicas():
    active = reps(ON, ON, OFF)
    assert recorded_in_sync(vol(), active) == {"r0", "r1"}
    assert recorded_in_sync(vol(["r2"]), active) == {"r2"}
    # members that are no longer replicas of the volume do not count; none left: the states decide
    assert recorded_in_sync(vol(["gone"]), active) == {"r0", "r1"}


def test_a_member_down_leaves_the_set_while_another_is_up():
    active = reps(ON, ON, ON)
    assert in_sync_after(vol(["r0", "r1", "r2"]), active, {"n1", "n2"}) == {"r1", "r2"}
    # a member that was already out stays out when it comes back
    assert in_sync_after(vol(["r1", "r2"]), active, {"n0", "n1", "n2"}) == {"r1", "r2"}
    assert in_sync_after(vol(["r1", "r2"]), active, {"n0", "n2"}) == {"r2"}


def test_every_member_down_keeps_the_set():
    # nothing can be written without them, and the records cannot tell which went last
    active = reps(OFF, OFF, OFF)
    assert in_sync_after(vol(["r1", "r2"]), active, set()) == {"r1", "r2"}
    # a stale replica that comes back alone does not join it
    assert in_sync_after(vol(["r1", "r2"]), active, {"n0"}) == {"r1", "r2"}
    # one member back: it alone is in sync from now on (it seeds the head, the others rebuild)
    assert in_sync_after(vol(["r1", "r2"]), active, {"n0", "n2"}) == {"r2"}
