"""``python -m ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler --settings FILE``."""

import sys

from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.main import main

sys.exit(main())
