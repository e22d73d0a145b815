"""Documentation of the module that works on the nodes of one machine (dtservice_node): how
long a client waits for its server. Its ``nodes`` and ``federation`` come from the
dtservice_nodes fragment."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  handshake_timeout:
    description: Seconds a client waits for its first handshake before it reports ServerUnreachable.
    type: float
    default: 45
"""
