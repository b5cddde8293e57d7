"""Typed errors inside meshblock; the gRPC edge turns them into status codes."""

from __future__ import annotations

import grpc


class MeshblockError(Exception):
    code = grpc.StatusCode.INTERNAL


class InvalidArgument(MeshblockError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFound(MeshblockError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(MeshblockError):
    code = grpc.StatusCode.ALREADY_EXISTS


class ResourceExhausted(MeshblockError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(MeshblockError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(MeshblockError):
    code = grpc.StatusCode.UNAVAILABLE


class Aborted(MeshblockError):
    code = grpc.StatusCode.ABORTED


class OutOfRange(MeshblockError):
    code = grpc.StatusCode.OUT_OF_RANGE
