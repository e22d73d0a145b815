"""Action plugin: dtservice_node in the controller's process when the task runs there."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugin_utils"))
from dtservice_inprocess import InProcessAction as ActionModule  # noqa: E402,F401
