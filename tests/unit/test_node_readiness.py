"""Whether a node could go down now without a volume losing its data path (control/readiness.py)."""

from meshblock.control.readiness import summary, volume_reasons
from meshblock.model import Replica, ReplicaState, Volume

ON, OFF, REB = ReplicaState.ONLINE, ReplicaState.OFFLINE, ReplicaState.REBUILDING
R = ["r0000000-a", "r1111111-b", "r2222222-c"]


def vol(replicas=3, in_sync=R, head="n0", standbys=("n1", "n2"), **kw):
    return Volume(id="v", name="db", replicas=replicas, in_sync=list(in_sync), head_node_id=head,
                  standby_paths={n: "127.0.0.1:4421" for n in standbys}, **kw)


def reps(*states):
    return [Replica(id=R[i], volume_id="v", node_id=f"n{i}", state=s) for i, s in enumerate(states)]


def reasons(node, v, active, *, up=("n0", "n1", "n2"), applied=True, standby_heads=True, pct=None):
    return volume_reasons(node, v, active, is_up=lambda n: n in up, applied=lambda v, r, rep: applied,
                          rebuild_percent=lambda rid: pct, standby_heads=standby_heads)


def test_a_whole_volume_with_standby_heads_keeps_none_of_its_nodes_from_being_ready():
    for node in ("n0", "n1", "n2"):
        assert reasons(node, vol(), reps(ON, ON, ON)) == []


def test_a_rebuilding_replica_holds_its_own_node_and_the_last_in_sync_one():
    v, active = vol(in_sync=R[:2], standbys=("n1",)), reps(ON, ON, REB)
    assert reasons("n2", v, active, pct=40.4) == ["replica r2222222 of volume db is rebuilding (40%)"]
    # n0 heads it with n1 in sync as a standby: it may go; so may n1 (n0 stays in sync)
    assert reasons("n0", v, active) == [] and reasons("n1", v, active) == []
    # with n1 down too, n0 holds the last in-sync replica and no standby could take over
    assert reasons("n0", v, active, up=("n0", "n2")) == [
        "volume db would lose its last in-sync replica",
        "the node heads volume db and no standby head could take over"]


def test_a_replica_the_head_dropped_from_its_in_sync_set_is_not_ready_even_when_online():
    v = vol(in_sync=R[:2])
    assert reasons("n2", v, reps(ON, ON, ON)) == ["replica r2222222 of volume db is not in sync"]
    assert reasons("n1", vol(), reps(ON, OFF, ON)) == ["replica r1111111 of volume db is offline"]


def test_not_ready_until_the_controller_has_seen_the_volume_since_the_agent_started():
    assert reasons("n1", vol(), reps(ON, ON, ON), applied=False) == [
        "volume db has not been checked since the node's agent started"]


def test_the_head_without_a_standby_is_not_ready_and_says_why():
    v = vol(standbys=())
    assert reasons("n0", v, reps(ON, ON, ON), standby_heads=False) == [
        "the node heads volume db and no standby head could take over "
        "(the controller runs with --no-standby-heads)"]
    assert reasons("n1", v, reps(ON, ON, ON), standby_heads=False) == []
    assert reasons("n0", vol(standbys=(), protocol="iscsi"), reps(ON, ON, ON))[0].endswith(
        "(iSCSI volumes have none)")
    # a standby whose replica is behind cannot take over
    assert reasons("n0", vol(in_sync=R[:1] + R[2:], standbys=("n1",)), reps(ON, ON, ON)) == [
        "the node heads volume db and no standby head could take over"]


def test_single_replica_volumes_only_need_their_replica_online():
    v = vol(replicas=1, in_sync=(), standbys=())
    one = [Replica(id=R[0], volume_id="v", node_id="n0", state=ON)]
    assert reasons("n0", v, one) == []
    assert reasons("n0", v, [Replica(id=R[0], volume_id="v", node_id="n0", state=ReplicaState.CREATING)]) == [
        "replica r0000000 of volume db is creating"]


def test_erasure_coded_volumes_need_k_shards_in_sync_elsewhere():
    v = vol(replicas=3, ec_data=2, ec_parity=1)
    assert reasons("n1", v, reps(ON, ON, ON)) == []
    v = vol(replicas=3, ec_data=2, ec_parity=1, in_sync=R[:2])
    assert reasons("n1", v, reps(ON, ON, REB)) == ["volume db would keep fewer than 2 shards in sync"]


def test_summary_names_three_reasons_and_counts_the_rest():
    assert summary(["a", "b"]) == "a; b"
    assert summary(["a", "b", "c", "d", "e"]) == "a; b; c; and 2 more"
