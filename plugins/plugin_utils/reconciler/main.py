"""The reconciler's command line: ``python -m <this package> --settings FILE``.

Owns the process: reading the settings, the JSON log on stderr, the Prometheus endpoint, a
log line for any thread that dies of an uncaught exception, and SIGTERM/SIGINT, which stop
the loop (runs in progress are left to finish on their own) and, when no run is in progress,
give up the Lease so that another reconciler leads at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.controller import Controller
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.settings import Settings
from ansible_collections.sightline.dtservice.plugins.plugin_utils.reconciler.telemetry import JsonFormatter, log, say


def _thread_died(args: threading.ExceptHookArgs) -> None:
    say(logging.ERROR, "thread died", thread=args.thread.name if args.thread else None,
        error=repr(args.exc_value)[:300], exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ansible_collections.sightline.dtservice.plugins.plugin_utils"
                                          ".reconciler",
                                     description="The dtService reconciler daemon: watches the federation and runs "
                                                 "playbooks/reconcile.yml for what changed.")
    parser.add_argument("--settings", required=True, help="JSON settings written by the dtservice_daemon role")
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        settings = Settings.load(args.settings)
    except (OSError, ValueError, KeyError, TypeError) as error:
        say(logging.ERROR, "cannot read the settings", path=args.settings, error=str(error))
        return 2
    threading.excepthook = _thread_died
    if settings.metrics_port:
        from prometheus_client import start_http_server  # the daemon's library, as in telemetry

        start_http_server(settings.metrics_port, addr=settings.metrics_address)
    controller = Controller(settings)

    def stop(signum: int, _frame: object) -> None:
        say(logging.INFO, "stopping", signal=signum)
        controller.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    controller.start_watches()
    say(logging.INFO, "started", nodes=[n.name for n in settings.nodes], metrics_port=settings.metrics_port,
        pid=os.getpid(), run_timeout_seconds=settings.run_timeout, identity=controller.identity,
        lease=f"{settings.lease.node.namespace}/{settings.lease.name}" if settings.lease else None)
    controller.loop()
    if controller.elector is not None and not controller.schedule.running:
        controller.elector.release()
    say(logging.INFO, "stopped")
    return 0
