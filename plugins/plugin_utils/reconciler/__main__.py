"""``python -m ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler --settings FILE``."""

import sys

from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.main import main

# Imported (by a tool that loads every file of the collection) rather than run: nothing to do.
if __name__ == "__main__":
    sys.exit(main())
