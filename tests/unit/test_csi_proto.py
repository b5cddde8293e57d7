"""The CSI v1 bindings speak the wire Kubernetes' CSI sidecars speak (CSI specification v1.12).

A wrong method path makes every call of a sidecar fail with UNIMPLEMENTED; a wrong field number
or enum value makes it read another field or capability in silence. The expected values are the
specification's.
"""

from __future__ import annotations

import pytest
from google.protobuf import descriptor_pb2

from meshblock.proto.csi.v1 import csi_pb2, csi_pb2_grpc

EXPECTED_METHODS = {
    "Identity": ["GetPluginInfo", "GetPluginCapabilities", "Probe"],
    "Controller": [
        "CreateVolume", "DeleteVolume", "ControllerPublishVolume", "ControllerUnpublishVolume",
        "ValidateVolumeCapabilities", "ListVolumes", "GetCapacity", "ControllerGetCapabilities",
        "CreateSnapshot", "DeleteSnapshot", "ListSnapshots", "GetSnapshot", "ControllerExpandVolume",
        "ControllerGetVolume", "ControllerModifyVolume",
    ],
    "GroupController": [
        "GroupControllerGetCapabilities", "CreateVolumeGroupSnapshot", "DeleteVolumeGroupSnapshot",
        "GetVolumeGroupSnapshot",
    ],
    "SnapshotMetadata": ["GetMetadataAllocated", "GetMetadataDelta"],
    "Node": [
        "NodeStageVolume", "NodeUnstageVolume", "NodePublishVolume", "NodeUnpublishVolume",
        "NodeGetVolumeStats", "NodeExpandVolume", "NodeGetCapabilities", "NodeGetInfo",
    ],
}
EXPECTED_PATHS = {f"/csi.v1.{svc}/{m}" for svc, methods in EXPECTED_METHODS.items() for m in methods}
SERVER_STREAMING = {"/csi.v1.SnapshotMetadata/GetMetadataAllocated", "/csi.v1.SnapshotMetadata/GetMetadataDelta"}


def descriptor_paths() -> dict[str, tuple[str, str, bool, bool]]:
    out = {}
    for svc in csi_pb2.DESCRIPTOR.services_by_name.values():
        for m in svc.methods:
            out[f"/{svc.full_name}/{m.name}"] = (
                m.input_type.full_name, m.output_type.full_name, m.client_streaming, m.server_streaming,
            )
    return out


def test_package_and_services():
    assert csi_pb2.DESCRIPTOR.package == "csi.v1"
    assert set(csi_pb2.DESCRIPTOR.services_by_name) == set(EXPECTED_METHODS)


def test_method_paths_types_and_streaming():
    paths = descriptor_paths()
    assert set(paths) == EXPECTED_PATHS
    for path, (req, resp, client_stream, server_stream) in paths.items():
        method = path.rsplit("/", 1)[1]
        assert (req, resp) == (f"csi.v1.{method}Request", f"csi.v1.{method}Response"), path
        assert not client_stream, path
        assert server_stream == (path in SERVER_STREAMING), path


class RecordingChannel:
    """Stands in for a grpc channel: records the path each stub method was built for."""

    def __init__(self) -> None:
        self.paths: dict[str, str] = {}

    def _record(self, kind: str):
        def make(path: str, *args, **kwargs):
            self.paths[path] = kind
            return lambda *a, **kw: None
        return make

    def __getattr__(self, kind: str):
        if kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            return self._record(kind)
        raise AttributeError(kind)


def test_generated_stubs_call_the_spec_paths():
    channel = RecordingChannel()
    for svc in EXPECTED_METHODS:
        getattr(csi_pb2_grpc, f"{svc}Stub")(channel)
    assert set(channel.paths) == EXPECTED_PATHS
    assert {p for p, kind in channel.paths.items() if kind == "unary_stream"} == SERVER_STREAMING
    assert {kind for p, kind in channel.paths.items() if p not in SERVER_STREAMING} == {"unary_unary"}


def numbers(message) -> dict[str, int]:
    return {f.name: f.number for f in message.DESCRIPTOR.fields}


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (csi_pb2.CreateVolumeRequest, {
            "name": 1, "capacity_range": 2, "volume_capabilities": 3, "parameters": 4, "secrets": 5,
            "volume_content_source": 6, "accessibility_requirements": 7, "mutable_parameters": 8,
        }),
        (csi_pb2.Volume, {
            "capacity_bytes": 1, "volume_id": 2, "volume_context": 3, "content_source": 4, "accessible_topology": 5,
        }),
        (csi_pb2.ControllerPublishVolumeRequest, {
            "volume_id": 1, "node_id": 2, "volume_capability": 3, "readonly": 4, "secrets": 5, "volume_context": 6,
        }),
        (csi_pb2.NodeStageVolumeRequest, {
            "volume_id": 1, "publish_context": 2, "staging_target_path": 3, "volume_capability": 4, "secrets": 5,
            "volume_context": 6,
        }),
        (csi_pb2.NodePublishVolumeRequest, {
            "volume_id": 1, "publish_context": 2, "staging_target_path": 3, "target_path": 4,
            "volume_capability": 5, "readonly": 6, "secrets": 7, "volume_context": 8,
        }),
        (csi_pb2.NodeGetInfoResponse, {"node_id": 1, "max_volumes_per_node": 2, "accessible_topology": 3}),
        (csi_pb2.VolumeCapability, {"block": 1, "mount": 2, "access_mode": 3}),
        (csi_pb2.Snapshot, {
            "size_bytes": 1, "snapshot_id": 2, "source_volume_id": 3, "creation_time": 4, "ready_to_use": 5,
            "group_snapshot_id": 6,
        }),
    ],
    ids=lambda v: v.DESCRIPTOR.name if hasattr(v, "DESCRIPTOR") else None,
)
def test_field_numbers(message, expected):
    assert numbers(message) == expected


def test_block_and_mount_are_one_choice():
    cap = csi_pb2.VolumeCapability(mount=csi_pb2.VolumeCapability.MountVolume(fs_type="ext4"))
    cap.block.SetInParent()
    assert cap.WhichOneof("access_type") == "block"
    assert not cap.HasField("mount")


def test_bytes_a_sidecar_sends_decode_as_expected():
    # CreateVolumeRequest{name: "pvc-1", capacity_range{required_bytes: 1 GiB}, parameters{"a": "b"}}
    # as the external-provisioner puts it on the wire: tags 0x0a (1, bytes), 0x12 (2), 0x22 (4).
    wire = b"\x0a\x05pvc-1" + b"\x12\x06\x08\x80\x80\x80\x80\x04" + b"\x22\x06\x0a\x01a\x12\x01b"
    req = csi_pb2.CreateVolumeRequest.FromString(wire)
    assert req.name == "pvc-1"
    assert req.capacity_range.required_bytes == 1 << 30
    assert dict(req.parameters) == {"a": "b"}
    assert req.SerializeToString(deterministic=True) == wire


def test_capability_enum_values():
    assert csi_pb2.PluginCapability.Service.CONTROLLER_SERVICE == 1
    assert csi_pb2.PluginCapability.Service.VOLUME_ACCESSIBILITY_CONSTRAINTS == 2
    assert csi_pb2.ControllerServiceCapability.RPC.CREATE_DELETE_VOLUME == 1
    assert csi_pb2.ControllerServiceCapability.RPC.PUBLISH_UNPUBLISH_VOLUME == 2
    assert csi_pb2.ControllerServiceCapability.RPC.EXPAND_VOLUME == 9
    assert csi_pb2.ControllerServiceCapability.RPC.MODIFY_VOLUME == 14
    assert csi_pb2.NodeServiceCapability.RPC.STAGE_UNSTAGE_VOLUME == 1
    assert csi_pb2.NodeServiceCapability.RPC.EXPAND_VOLUME == 3
    assert csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER == 1
    assert csi_pb2.VolumeCapability.AccessMode.MULTI_NODE_MULTI_WRITER == 5


def test_secret_fields_carry_the_csi_secret_option():
    # Sidecars and log scrubbers find credentials by field option 1059 (csi_secret).
    assert csi_pb2.csi_secret.number == 1059
    assert csi_pb2.alpha_field.number == 1060
    marked = set()
    for msg in csi_pb2.DESCRIPTOR.message_types_by_name.values():
        for field in msg.fields:
            opts = descriptor_pb2.FieldOptions.FromString(field.GetOptions().SerializeToString())
            if opts.Extensions[csi_pb2.csi_secret]:
                marked.add(f"{msg.name}.{field.name}")
    assert "CreateVolumeRequest.secrets" in marked
    assert "NodeStageVolumeRequest.secrets" in marked
    assert "NodePublishVolumeRequest.secrets" in marked
    # every field named secrets is marked, and nothing else is
    named = {f"{m.name}.{f.name}" for m in csi_pb2.DESCRIPTOR.message_types_by_name.values() for f in m.fields
             if f.name == "secrets"}
    assert marked == named
