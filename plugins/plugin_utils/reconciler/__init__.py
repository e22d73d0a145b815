"""The reconciler daemon: watches the federation and runs ``playbooks/reconcile.yml`` for what changed.

Owns when reconciles happen, not what they do (that is the playbook and its modules). One
concern per module:

- ``schedule``: which nodes run when and with whom (pure: no threads, no I/O, time passed in);
- ``watches``: LIST + WATCH of dtServices, dtDomains and Pods per node, feeding the schedule;
- ``runner``: one ansible-runner run of ``playbooks/reconcile.yml``, with a time limit;
- ``controller``: the threads around the schedule (the loop, one worker per run);
- ``settings``: the JSON settings the ``dtservice_daemon`` role writes;
- ``telemetry``: the JSON log lines and the Prometheus metrics;
- ``main``: the command line, signals and the metrics endpoint (``python -m`` this package).

Controller-side code: it runs where ansible-playbook runs, never on a node, and needs
ansible-runner and prometheus_client besides the core's urllib3 and PyYAML.
"""
