"""Python clients: :class:`Client` for users, :class:`TaskReporter` for runtimes inside tasks."""

from llmos.client.client import Client, ConnectionFailed
from llmos.client.reporter import TaskReporter

__all__ = ["Client", "ConnectionFailed", "TaskReporter"]
