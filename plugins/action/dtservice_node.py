"""Action plugin: dtservice_node in the controller's process when the task runs there."""

from ansible_collections.sightline.dtservice.plugins.plugin_utils.inprocess import InProcessAction


class ActionModule(InProcessAction):
    """InProcessAction finds the module by the task's action name; nothing to add here."""
