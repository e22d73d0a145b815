"""Documentation of the option the modules that reconcile a pass share (dtservice_reconcile,
dtservice_node): ``key_max_age``, rotating keys older than it."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  key_max_age:
    description:
      - Seconds after which a dtService's key pair is replaced by a new one (the key Secret's
        C(sid.sightlineinnovation.com/key-created) annotation dates it); 0 never rotates by age.
      - The rotation loses no packet; see docs/day2.md, "Key rotation".
    type: float
    default: 0
"""
