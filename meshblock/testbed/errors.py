"""Errors raised by the test bed."""

from __future__ import annotations


class TestbedError(Exception):
    """Base class for test-bed errors."""

    __test__ = False  # not a pytest test class


class TestbedUnavailable(TestbedError):
    """This machine cannot run the test bed (missing tools, no mirror, build failed)."""


class GuestError(TestbedError):
    """A guest did not boot, died, or its agent misbehaved."""


class AgentTimeout(GuestError):
    """The guest agent did not answer in time."""


class CommandFailed(TestbedError):
    """A command run in a guest exited non-zero (or timed out) where success was required."""

    def __init__(self, result):
        self.result = result
        super().__init__(result.describe())
