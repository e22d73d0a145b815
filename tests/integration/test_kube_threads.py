"""One ``ApiClient`` used from many threads at once against a real kube-apiserver of the bed.

urllib3 (2.x) sets ALPN, ``verify_mode`` and sometimes ``check_hostname`` on the SSL context
it is given each time it opens a connection; when threads share one context, a thread's
``set_alpn_protocols`` frees the context's protocol list while another thread's ``SSL_new``
(which runs without the GIL) copies it, and that ClientHello carries garbage: the server
answers with a ``decode_error`` alert (``TLSV1_ALERT_DECODE_ERROR``), now and then
(python/cpython#141012). Fresh threads make fresh connections, so bursts of new threads through
one client are what would find it; the race is rare, so this is a net, and
``tests/unit/test_kubeapi.py`` checks the rule that rules it out (no context shared by threads).
"""

from __future__ import annotations

import threading

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import ApiClient, load_endpoint

pytestmark = pytest.mark.integration

THREADS = 32
ROUNDS = 60
REQUESTS = 4


def test_one_client_many_threads_never_breaks_tls(bed_factory):
    bed = bed_factory(nodes=1)
    node = bed.node("node0")
    # The admin's kubeconfig: the provisioner's rights come with deploy.yml, which this test needs not.
    api = ApiClient(load_endpoint(kubeconfig=node.admin_kubeconfig))
    paths = [f"/api/v1/namespaces/{node.namespace}/pods", "/api/v1/namespaces",
             "/apis/coordination.k8s.io"]
    errors: list[str] = []
    answered = [0]
    lock = threading.Lock()

    def hammer(index: int) -> None:
        for request in range(REQUESTS):
            try:
                listing = api.request("GET", paths[(index + request) % len(paths)])
            except Exception as error:  # noqa: BLE001 - every failure is the finding
                with lock:
                    errors.append(repr(error)[:300])
                continue
            assert listing.get("kind") in ("PodList", "NamespaceList", "APIGroup")
            with lock:
                answered[0] += 1

    for _round in range(ROUNDS):
        # New threads each round: new connections, so TLS handshakes side by side.
        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == [], f"{len(errors)} of {THREADS * ROUNDS * REQUESTS} requests failed, first: {errors[:3]}"
    assert answered[0] == THREADS * ROUNDS * REQUESTS
