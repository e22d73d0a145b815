"""Action plugin: dtservice_reconcile in the controller's process when the task runs there."""

from ansible_collections.sightline.dtservice.plugins.plugin_utils.inprocess import InProcessAction as ActionModule  # noqa: F401
