"""The two Kubernetes clients, measured for the reconciler daemon's job on a real test bed.

``kubernetes`` (the official package, which the daemon used) against the project's own
``plugins/module_utils/kube/client.py`` (urllib3 + PyYAML, with its streaming ``watch``). Each
measurement is a fresh Python process that

1. imports the client (wall time of the import: ``import_s``);
2. LISTs the 100 dtServices of node0's namespace, 20 times (``list_100_ms``: the median);
3. lists and watches 3 namespaces x 3 kinds (dtServices, dtDomains, Pods: 9 threads, as the
   daemon does), waits until every watch has started and 3 s more, and reads its own
   VmRSS (``rss_mib``).

Both clients list the way the daemon did (the kubernetes client with ``_preload_content=False``
and ``json.loads``, which skips its model deserialisation) and watch with their streaming
watch (the kubernetes client's ``watch.Watch().stream``). Each client is measured ``--rounds``
times, alternately; the table shows medians, JSON goes to bench/results/.

Run as root: ``bench/run`` runs bench.py, this runs as
``source .dtservice.env && python bench/kube_clients.py`` (under the machine's integration
lock where engineers share it: ``flock /tmp/dtservice-integration.lock python bench/kube_clients.py``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools" / "testbed"))

from testbed import Testbed  # noqa: E402  (tools/testbed is not a package)

GROUP, VERSION = "sid.sightlineinnovation.com", "v1"
SERVICES = 100

# The measured process; argv: client, kubeconfig, namespace..., the first namespace has the 100 dtServices.
PROBE = r'''
import json, sys, threading, time
client_name, kubeconfig, namespaces = sys.argv[1], sys.argv[2], sys.argv[3:]
GROUP, VERSION = "sid.sightlineinnovation.com", "v1"
KINDS = ("dtservices", "dtdomains", "pods")
started = time.perf_counter()
if client_name == "kubernetes":
    from kubernetes import client, config, watch
else:
    from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import ApiClient, load_endpoint
import_s = time.perf_counter() - started

if client_name == "kubernetes":
    api = config.new_client_from_config(config_file=kubeconfig)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)

    def lister(namespace, kind):
        if kind == "pods":
            return core.list_namespaced_pod, (namespace,)
        return custom.list_namespaced_custom_object, (GROUP, VERSION, namespace, kind)

    def list_(namespace, kind):
        function, args = lister(namespace, kind)
        return json.loads(function(*args, _preload_content=False).data)

    def watch_(namespace, kind, version, ready):
        function, args = lister(namespace, kind)
        ready.set()  # the request goes out as the stream is first iterated
        for _ in watch.Watch().stream(function, *args, resource_version=version, timeout_seconds=300,
                                      allow_watch_bookmarks=True):
            pass
else:
    api = ApiClient(load_endpoint(kubeconfig=kubeconfig))

    def path(namespace, kind):
        if kind == "pods":
            return f"/api/v1/namespaces/{namespace}/pods"
        return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{kind}"

    def list_(namespace, kind):
        return api.request("GET", path(namespace, kind))

    def watch_(namespace, kind, version, ready):
        stream = api.watch(path(namespace, kind), resource_version=version)
        ready.set()
        for _ in stream:
            pass

took = []
for _ in range(20):
    t = time.perf_counter()
    listing = list_(namespaces[0], "dtservices")
    took.append(time.perf_counter() - t)
assert len(listing["items"]) >= 100, len(listing["items"])
readies = []
for namespace in namespaces:
    for kind in KINDS:
        version = list_(namespace, kind)["metadata"]["resourceVersion"]
        ready = threading.Event()
        readies.append(ready)
        threading.Thread(target=watch_, args=(namespace, kind, version, ready), daemon=True).start()
for ready in readies:
    assert ready.wait(30)
time.sleep(3)  # the kubernetes client sends its WATCH once its stream is first read: let all start
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
took.sort()
print(json.dumps({"client": client_name, "import_s": round(import_s, 3),
                  "list_100_ms": round(1000 * took[len(took) // 2], 1),
                  "rss_mib": round(int(status["VmRSS"].split()[0]) / 1024, 1),
                  "threads": int(status["Threads"])}))
'''


def say(message: str) -> None:
    print(f"[kube_clients {datetime.datetime.now():%H:%M:%S} load {os.getloadavg()[0]:.2f}] {message}",
          file=sys.stderr, flush=True)


def seed(bed: Testbed) -> None:
    node0 = bed.node("node0")
    for crd in sorted((ROOT / "roles" / "dtservice_cluster" / "files").glob("*.yaml")):
        bed.kubectl(node0, "apply", "-f", str(crd), admin=True)
    bed.kubectl(node0, "wait", "--for=condition=Established", "--timeout=60s", "crd/dtservices." + GROUP,
                "crd/dtdomains." + GROUP, admin=True)
    items = [{"apiVersion": f"{GROUP}/{VERSION}", "kind": "dtService",
              "metadata": {"name": f"net{i}", "namespace": node0.namespace},
              "spec": {"domainSelector": "mydomain", "podSelector": f"pod{i}"}} for i in range(SERVICES)]
    bed.kubectl(node0, "apply", "-f", "-", admin=True, stdin=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                         "items": items}))


def probe(client_name: str, bed: Testbed) -> dict:
    kubeconfig = bed.node("node0").admin_kubeconfig
    namespaces = [bed.node(f"node{i}").namespace for i in range(3)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / ".collections")}
    done = subprocess.run([sys.executable, "-c", PROBE, client_name, str(kubeconfig), *namespaces], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{client_name} probe failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="measurements per client (default 5)")
    parser.add_argument("--prefix", default="dtkc-", help="network namespace prefix of the bed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dtservice-kube-clients-") as scratch:
        bed = Testbed(Path(scratch) / "bed", prefix=args.prefix)
        try:
            bed.start(nodes=3)
            seed(bed)
            runs = []
            for index in range(args.rounds):
                for name in (("kubernetes", "project") if index % 2 == 0 else ("project", "kubernetes")):
                    runs.append(probe(name, bed))
                    say(json.dumps(runs[-1]))
        finally:
            bed.stop()
    summary = {}
    for name in ("kubernetes", "project"):
        mine = [r for r in runs if r["client"] == name]
        summary[name] = {key: statistics.median(r[key] for r in mine) for key in ("import_s", "list_100_ms", "rss_mib")}
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"kube-clients-{datetime.datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps({"rounds": args.rounds, "runs": runs, "median": summary,
                               "load_end": os.getloadavg()}, indent=2))
    print(f"{'client':<12} {'import s':>9} {'LIST 100 dtServices ms':>23} {'RSS MiB (9 watches)':>20}")
    for name, row in summary.items():
        print(f"{name:<12} {row['import_s']:>9.3f} {row['list_100_ms']:>23.1f} {row['rss_mib']:>20.1f}")
    print(f"(medians of {args.rounds}; all runs in {out.relative_to(ROOT)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
