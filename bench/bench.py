"""Benchmarks of the dtService provisioner on local federations (real API servers, real wireguard-go).

Cases (``--cases``, default all):
  deploy      deploy.yml from nothing to every peer Connected with a handshake: one network of P peers
              on P nodes (P = 3, 30, 100), and 20 networks of 3 peers on 3 nodes; wall time and the
              API requests every API server counted (its own /metrics, ``apiserver_request_total``).
  noop        deploy.yml again on each converged federation of ``deploy``: wall time, API requests
              by verb, changed=0 from the PLAY RECAP, against bench/empty.yml on the same inventory,
              the two in turn ``--noop-pairs`` times (3), a run's figures the medians of its pairs.
              Also two parts of its floor: bench/skeleton.yml (deploy.yml's plays and tasks, with
              nothing to plan or move), and as many API requests as the no-op read, alone (GETs
              of a missing dtService in the node namespaces, 16 at a time as the pass reads ahead).
  daemon      the reconciler daemon: 20 networks served on node0 (kubectl apply), then 20 joins from
              node1, each timed from kubectl apply to Connected; against an empty ansible-runner run.
  disruption  ping -i 0.05 over an existing tunnel while 20 peers join (deploy.yml) and leave
              (teardown.yml): packets lost.
  memory      the daemon's RSS (VmRSS) idle with 100 dtServices, once it has not run for 10 s.
  failover    the reconciler daemon on 4 nodes: a network's hub (node0) is deleted (kubectl delete)
              while two of its three clients ping each other (ping -D -i 0.05) through it, 5 times;
              the time with no reply (the longest gap, less one interval) and from the deletion to the
              registry naming the new hub.

Every case starts fresh beds of its own (namespace prefix ``--prefix``, default ``dtbench-``) and
stops them, also on failure or Ctrl-C. One table goes to stdout and JSON to bench/results/.
Run as root, from bench/run (which sources .dtservice.env).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import math
import os
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tools" / "testbed"))

from testbed import Testbed, list_netns  # noqa: E402  (tools/testbed is not a package)

GROUP, VERSION = "sid.sightlineinnovation.com", "v1"
EMPTY_PLAYBOOK = BENCH / "empty.yml"
SKELETON_PLAYBOOK = BENCH / "skeleton.yml"
READ_VERBS = {"GET", "LIST", "WATCH"}
# Requests that are not the provisioner's: the controller manager's leader lease, the /metrics and health probes.
# benchmark's own /metrics and health probes, the API server's own endpoints reconciler.
NOISE_RESOURCES = {"leases", "endpoints", "endpointslices", "/metrics", "/healthz", "/readyz", "/livez"}
ALL_CASES = ("deploy", "noop", "daemon", "disruption", "memory", "failover")
SERVICE_YAML = """apiVersion: sid.sightlineinnovation.com/v1
kind: dtService
metadata:
  name: {name}
spec:
  domainSelector: mydomain
  podSelector: {pod}
"""


def say(message: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[bench {stamp} load {os.getloadavg()[0]:.2f}] {message}", file=sys.stderr, flush=True)


# -- load ---------------------------------------------------------------------------------------
class LoadSampler:
    """1-minute load average sampled every 2 s while a measurement runs."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(2)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])

    def summary(self) -> dict:
        return {"mean_1m": round(statistics.mean(self.samples), 2), "max_1m": round(max(self.samples), 2),
                "end": [round(x, 2) for x in os.getloadavg()]}


def busy_share(seconds: float) -> float:
    """The share of the machine's CPU time (all cores) that was not idle over ``seconds``."""
    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # idle and iowait
    total, idle = sample()
    time.sleep(seconds)
    total_after, idle_after = sample()
    return 1 - (idle_after - idle) / max(1, total_after - total)


def wait_quiet(*, below: float, window: float = 2.0, at_most: float = 120.0) -> dict:
    """Wait until at most ``below`` of all cores' time is busy over ``window``, so that a timed
    run measures itself and not the bed still settling (its kubelets were still at work, at a
    load of 11 to 12, when the first deploy began). Returns how long it waited and how busy the
    machine was when it stopped (after ``at_most`` it says so and measures anyway)."""
    started = time.monotonic()
    while True:
        busy = busy_share(window)
        waited = time.monotonic() - started
        if busy > below and waited >= at_most:
            say(f"the machine is still {busy:.0%} busy after {waited:.0f}s; measuring anyway")
        if busy <= below or waited >= at_most:
            return {"waited_s": round(waited, 1), "busy": round(busy, 2)}


# -- the bed ------------------------------------------------------------------------------------
class Bed:
    """A Testbed that is always stopped, plus the admin API access the benchmarks need."""

    def __init__(self, workdir: Path, name: str, prefix: str, nodes: int) -> None:
        self.testbed = Testbed(workdir / name, prefix=prefix)
        self.nodes = nodes
        self.workdir = workdir / f"{name}-files"
        self._api = None

    def __enter__(self) -> Bed:
        self.workdir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        try:
            self.testbed.start(nodes=self.nodes)
        except BaseException:
            self.testbed.stop()
            raise
        say(f"bed of {self.nodes} node(s) up in {time.monotonic() - started:.1f}s")
        return self

    def __exit__(self, *_exc) -> None:
        self.testbed.stop()

    @property
    def dir(self) -> Path:
        return self.testbed.dir

    def pods(self, placements: Iterable[tuple[str, str]]) -> None:
        started = time.monotonic()
        count = 0
        placements = list(placements)
        # kubectl apply every Pod first, then wait: kubelets start them side by side.
        for node, pod in placements:
            self.testbed.create_pod(node, pod, wait=False)
            count += 1
        for node, pod in placements:
            self.testbed.wait_pod_running(node, pod)
        say(f"{count} pod(s) running under kubelet in {time.monotonic() - started:.1f}s")

    def inventory(self, name: str, services: dict[str, list[dict]], *, daemon: bool = False) -> str:
        return self.testbed.write_inventory(self.workdir / f"{name}.json", services=services, daemon=daemon)

    # API access as the cluster admin (kubernetes client, one connection per cluster)
    def custom(self, cluster: int = 0):
        from kubernetes import client, config

        if self._api is None:
            self._api = {}
        if cluster not in self._api:
            kubeconfig = Path(self.testbed.state["clusters"][cluster]["dir"]) / "admin.kubeconfig"
            self._api[cluster] = client.CustomObjectsApi(config.new_client_from_config(config_file=str(kubeconfig)))
        return self._api[cluster]

    def statuses(self) -> dict[tuple[str, str], str | None]:
        """(namespace, name) -> status of every dtService of every cluster (one LIST per cluster)."""
        found = {}
        for index in range(len(self.testbed.state["clusters"])):
            listing = self.custom(index).list_cluster_custom_object(GROUP, VERSION, "dtservices")
            for item in listing["items"]:
                found[(item["metadata"]["namespace"], item["metadata"]["name"])] = item.get("status")
        return found

    def status(self, node: str, name: str) -> str | None:
        from kubernetes.client.exceptions import ApiException

        bed_node = self.testbed.node(node)
        try:
            return self.custom(bed_node.cluster).get_namespaced_custom_object(
                GROUP, VERSION, bed_node.namespace, "dtservices", name).get("status")
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def apply(self, node: str, manifests: list[tuple[str, str]]) -> None:
        """kubectl apply of dtServices (name, pod) on a node, as a user does it."""
        bed_node = self.testbed.node(node)
        text = "---\n".join(SERVICE_YAML.format(name=name, pod=pod) for name, pod in manifests)
        self.testbed.kubectl(bed_node, "apply", "-n", bed_node.namespace, "-f", "-", admin=True, stdin=text)

    def api_requests(self) -> Counter:
        """(verb, resource) -> requests, summed over every API server of the bed, from /metrics."""
        total: Counter = Counter()
        for cluster in self.testbed.state["clusters"]:
            pki = Path(cluster["dir"]) / "pki"
            context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
            context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
            with urllib.request.urlopen(f"{cluster['server']}/metrics", context=context, timeout=30) as response:
                body = response.read().decode()
            for line in body.splitlines():
                if not line.startswith("apiserver_request_total{"):
                    continue
                labels_text, value = line[len("apiserver_request_total{"):].rsplit("} ", 1)
                labels = dict(re.findall(r'(\w+)="([^"]*)"', labels_text))
                if labels.get("resource"):
                    resource = labels["resource"] + (f"/{labels['subresource']}" if labels.get("subresource") else "")
                else:  # non-resource URLs (discovery, openapi, probes) carry the path in subresource
                    resource = "/" + labels.get("subresource", "").lstrip("/")
                verb = labels["verb"] + ("(dry-run)" if labels.get("dry_run") else "")
                total[(verb, resource)] += int(float(value))
        return total

    def server_handshakes(self, node: str, pod: str) -> dict[str, int]:
        """Interface -> peers with a handshake, as the server's pod sees them. Only the pod's own
        interfaces are asked (`wg show all` would also reach every wireguard-go on the machine)."""
        netns = self.testbed.pod_netns(node, pod)
        links = subprocess.run(["ip", "-n", netns, "-j", "link", "show"], capture_output=True, text=True, check=False)
        names = [link["ifname"] for link in json.loads(links.stdout or "[]")
                 if re.fullmatch(r"dt[0-9a-f]{10}", link.get("ifname", ""))]
        counts: Counter = Counter()
        for name in names:
            out = subprocess.run(["ip", "netns", "exec", netns, "wg", "show", name, "latest-handshakes"],
                                 capture_output=True, text=True, check=False).stdout
            counts[name] = sum(1 for line in out.splitlines() if len(line.split()) == 2 and int(line.split()[1]) > 0)
        return dict(counts)


def request_delta(before: Counter, after: Counter) -> dict:
    """What happened between two /metrics snapshots, by verb and by resource, without noise
    (the API server does not count its own /metrics requests)."""
    delta = {f"{verb} {resource}": after[(verb, resource)] - before.get((verb, resource), 0)
             for verb, resource in after if after[(verb, resource)] - before.get((verb, resource), 0)}
    return classify(delta)


def is_noise(key: str) -> bool:
    """Requests the provisioner did not make: the controller manager's lease, the API server's
    endpoints reconciler, probes, and WATCHes (a watch is counted when it ends, so informer
    watches of the controller manager that expire in the window show up; the playbooks never
    watch, and the daemon is off in the cases that count requests)."""
    verb, _sep, resource = key.partition(" ")
    return resource in NOISE_RESOURCES or verb == "WATCH"


def classify(delta: dict[str, int], noise: dict[str, int] | None = None) -> dict:
    real = {key: n for key, n in delta.items() if n and not is_noise(key)}
    excluded = {**(noise or {}), **{key: n for key, n in delta.items() if n and is_noise(key)}}
    by_verb: Counter = Counter()
    for key, n in real.items():
        by_verb[key.partition(" ")[0]] += n
    return {"total": sum(real.values()), "by_verb": dict(sorted(by_verb.items())),
            "by_resource": dict(sorted(real.items())), "excluded_noise": excluded}


# -- playbooks ----------------------------------------------------------------------------------
class PlaybookFailed(RuntimeError):
    """A playbook ended with a non-zero status."""


def ansible_playbook(bed: Bed, playbook: Path | str, inventory: str, *extra: str, env: dict | None = None,
                     check: bool = True) -> tuple[float, subprocess.CompletedProcess]:
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", inventory, str(playbook), *extra]
    environment = {**os.environ, "DTSERVICE_TESTBED_DIR": str(bed.dir), "ANSIBLE_FORCE_COLOR": "0",
                   **(env or {})}
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, env=environment, text=True, capture_output=True, check=False)
    seconds = time.monotonic() - started
    if check and result.returncode != 0:
        raise PlaybookFailed(failure_text(playbook, result, seconds))
    return seconds, result


def failure_text(playbook: Path | str, result: subprocess.CompletedProcess, seconds: float) -> str:
    fatal = [fatal_message(line) for line in result.stdout.splitlines() if line.startswith(("fatal:", "failed:"))]
    return (f"{Path(playbook).name} failed ({result.returncode}) after {seconds:.1f}s: " + "\n".join(fatal[:5])
            + (f"\n{result.stderr[-1500:]}" if result.stderr.strip() else ""))


def deploy(bed: Bed, inventory: str, passes: int) -> tuple[float, int, list[str], subprocess.CompletedProcess]:
    """deploy.yml until it succeeds, at most `passes` times, as a user re-runs a failed deploy:
    (seconds of all passes, passes, why the failed ones failed, the last result)."""
    total, failures = 0.0, []
    for attempt in range(passes):
        seconds, result = ansible_playbook(bed, ROOT / "playbooks/deploy.yml", inventory, check=False)
        total += seconds
        if result.returncode == 0:
            return total, attempt + 1, failures, result
        failures.append(failure_text("deploy.yml", result, seconds))
        say(f"deploy pass {attempt + 1} failed: {failures[-1][:300]}")
    raise PlaybookFailed(f"deploy.yml failed {passes} time(s): " + " // ".join(failures))


def fatal_message(line: str) -> str:
    """`fatal: [host]: FAILED! => {...}` as `fatal: [host]: <msg>`, without the module's full result."""
    head, _sep, body = line.partition(" => ")
    try:
        return f"{head.replace(' FAILED!', '')} {json.loads(body).get('msg', body[-1500:])}"[:3000]
    except ValueError:
        return line[:3000]


def recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP counters per host."""
    counts = {}
    for line in output.rsplit("PLAY RECAP", maxsplit=1)[-1].strip().splitlines():
        host, _sep, fields = line.partition(":")
        if " ok=" not in f" {fields}":
            if counts:
                break  # the end of the recap (a profiling callback may print after it)
            continue
        counts[host.strip()] = {k: int(v) for k, v in (f.split("=") for f in fields.split())}
    return counts


def wait_until(predicate: Callable[[], object], *, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


# -- case 1 and 2: deploy scaling and the no-op re-run ------------------------------------------
def scaling_configs(args) -> list[dict]:
    configs = [{"label": f"P={p}", "nodes": p, "networks": 1, "runs": args.p100_runs if p >= 100 else args.runs}
               for p in args.peers]
    if args.networks:
        configs.append({"label": f"{args.networks}x3", "nodes": 3, "networks": args.networks, "runs": args.runs})
    return configs


def scaling_run(cfg: dict, run: int, args, workdir: Path) -> dict:
    nodes, networks = cfg["nodes"], cfg["networks"]
    names = ["myservice"] if networks == 1 else [f"net{k}" for k in range(networks)]
    placements = {f"node{i}": [(name, f"p{i}" if networks == 1 else f"p{i}-{k}") for k, name in enumerate(names)]
                  for i in range(nodes)}
    with Bed(workdir, f"scale-{cfg['label'].replace('=', '')}-{run}", args.prefix, nodes) as bed:
        bed.pods((node, pod) for node, pairs in placements.items() for _name, pod in pairs)
        services = {node: [{"name": name, "domain": "mydomain", "pod": pod} for name, pod in pairs]
                    for node, pairs in placements.items()}
        inventory = bed.inventory("deploy", services)
        expected = {(bed.testbed.node(node).namespace, name) for node, pairs in placements.items()
                    for name, _pod in pairs}
        record: dict = {"quiet_before_deploy": wait_quiet(below=args.quiet_below)}
        with LoadSampler() as load:
            before = bed.api_requests()
            started = time.monotonic()
            playbook_s, passes, pass_failures, result = deploy(bed, inventory, args.deploy_passes)
            after = bed.api_requests()

            seen: dict = {}

            def converged() -> bool:
                states = bed.statuses()
                seen["not connected"] = {f"{ns}/{name}": states.get((ns, name)) for ns, name in sorted(expected)
                                         if states.get((ns, name)) != "Connected"}
                if seen["not connected"]:
                    return False
                handshakes = Counter()
                for _name, pod in placements["node0"]:
                    handshakes.update(bed.server_handshakes("node0", pod))
                seen["server handshakes"] = dict(handshakes)
                return sum(handshakes.values()) >= networks * (nodes - 1)

            try:
                wait_until(converged, timeout=args.connect_timeout, what="every peer Connected with a handshake",
                           interval=0.5)
            except TimeoutError as error:
                raise TimeoutError(f"{error}; last seen: {json.dumps(seen)[:3000]}") from None
            wall = time.monotonic() - started
        counts = recap(result.stdout)
        record["deploy"] = {"wall_s": round(wall, 2), "playbook_s": round(playbook_s, 2),
                            "wait_after_playbook_s": round(wall - playbook_s, 2),
                            "passes": passes, "failed_passes": pass_failures,
                            "changed_hosts": sum(1 for c in counts.values() if c.get("changed")),
                            "api": request_delta(before, after), "load": load.summary()}
        say(f"{cfg['label']} run {run}: deploy {wall:.1f}s (playbook {playbook_s:.1f}s, {passes} pass(es)), "
            f"{record['deploy']['api']['total']} API requests")
        if "noop" in args.cases:
            # As before the deploy: the no-op measures itself, not a machine still busy with
            # the deploy's bed (100 wireguard-go handshaking, the kubelets' status updates).
            record["quiet_before_noop"] = wait_quiet(below=args.quiet_below)
            with LoadSampler() as load:
                before = bed.api_requests()
                noop_s, result = ansible_playbook(bed, ROOT / "playbooks/deploy.yml", inventory)
                after = bed.api_requests()
                floor_s, _floor_result = ansible_playbook(bed, EMPTY_PLAYBOOK, inventory)
                after_floor = bed.api_requests()
                # More pairs, the no-op and the empty playbook in turn: one of each moved the
                # run's ratio by half (1.47x to 2.37x in one bench/run at P=100) with the host.
                pairs, later = [(noop_s, floor_s)], []
                for _pair in range(args.noop_pairs - 1):
                    again_s, again = ansible_playbook(bed, ROOT / "playbooks/deploy.yml", inventory)
                    empty_s, _empty = ansible_playbook(bed, EMPTY_PLAYBOOK, inventory)
                    pairs.append((again_s, empty_s))
                    later.append(recap(again.stdout))
                after_pairs = bed.api_requests()
                skeleton_s, _skeleton_result = ansible_playbook(bed, SKELETON_PLAYBOOK, inventory)
            counts = recap(result.stdout)
            api = request_delta(before, after)
            reads = sum(n for v, n in api["by_verb"].items() if v in READ_VERBS)
            later_writes = sum(n for v, n in request_delta(after_floor, after_pairs)["by_verb"].items()
                               if v not in READ_VERBS)
            noop_s, floor_s = statistics.median(n for n, _f in pairs), statistics.median(f for _n, f in pairs)
            record["noop"] = {
                "wall_s": round(noop_s, 2), "floor_s": round(floor_s, 2), "ratio": round(noop_s / floor_s, 2),
                "pairs": [[round(n, 2), round(f, 2)] for n, f in pairs],
                "changed": max(sum(c.get("changed", 0) for c in each.values()) for each in [counts, *later]),
                "failed": max(sum(c.get("failed", 0) for c in each.values()) for each in [counts, *later]),
                "hosts": len(counts), "api": api,
                "writes": sum(n for v, n in api["by_verb"].items() if v not in READ_VERBS) + later_writes,
                "reads_per_node": round(sum(n for v, n in api["by_verb"].items() if v in READ_VERBS) / nodes, 1),
                "floor_api": request_delta(after, after_floor)["total"],
                "skeleton_s": round(skeleton_s, 2), "requests_alone_s": round(requests_alone(bed, reads), 2),
                "load": load.summary()}
            if record["noop"]["changed"]:
                record["noop"]["changed_tasks"] = changed_tasks(result.stdout)
            say(f"{cfg['label']} run {run}: no-op {noop_s:.2f}s (floor {floor_s:.2f}s; "
                f"pairs {record['noop']['pairs']}), "
                f"changed={record['noop']['changed']}, API {api['by_verb']}")
        return record


def requests_alone(bed: Bed, count: int) -> float:
    """Seconds for ``count`` API requests that find nothing (GETs of a missing dtService, round the
    node namespaces), with the provisioner's credentials and the project's client, 16 at a time
    as the pass reads ahead: what the no-op's reads cost without any work on their answers. A
    GET that finds nothing costs the API server about what a namespace's LIST does."""
    if str(ROOT / ".collections") not in sys.path:  # called once per run
        sys.path.insert(0, str(ROOT / ".collections"))
    from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import ApiClients, ApiError
    from ansible_collections.sightline.dtservice.plugins.module_utils.module_args import PARALLEL_NODES

    nodes = bed.testbed.nodes
    clients = ApiClients()

    def one(index: int) -> None:
        node = nodes[index % len(nodes)]
        try:
            clients.get(node.kubeconfig, None).request(
                "GET", f"/apis/{GROUP}/{VERSION}/namespaces/{node.namespace}/dtservices/dtbench-missing")
        except ApiError as error:
            if error.status != 404:
                raise

    for index in range(len(nodes)):  # each client's connections open before the clock starts
        one(index)
    with concurrent.futures.ThreadPoolExecutor(PARALLEL_NODES) as pool:
        started = time.monotonic()
        list(pool.map(one, range(count)))
        return time.monotonic() - started


def changed_tasks(output: str) -> list[str]:
    """The task headers under which a host reported changed (for a no-op that was not one)."""
    found, task = [], None
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line[6:line.index("]")]
        elif line.startswith("changed:") and task and task not in found:
            found.append(task)
    return found


# -- case 3: the daemon's apply-to-Connected latency ----------------------------------------------
def runner_floor(bed: Bed, inventory: str, times: int, workdir: Path) -> list[float]:
    """ansible_runner.run of the empty playbook as the daemon runs reconcile.yml (one host, quiet)."""
    import ansible_runner

    took = []
    for index in range(times):
        private = workdir / f"runner-floor-{index}"
        private.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        runner = ansible_runner.run(
            private_data_dir=str(private), project_dir=str(ROOT), playbook=str(EMPTY_PLAYBOOK),
            inventory=inventory, limit="node1", quiet=True, rotate_artifacts=2,
            envvars={"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
                     "ANSIBLE_CALLBACK_PLUGINS": str(ROOT / "plugins" / "callback"),
                     "DTSERVICE_TESTBED_DIR": str(bed.dir)})
        took.append(time.monotonic() - started)
        if runner.rc != 0:
            raise RuntimeError(f"the empty playbook failed under ansible-runner (rc {runner.rc})")
    return took


def daemon_runs(bed: Bed, since: float) -> list[dict]:
    """The daemon's 'reconciled' log entries after `since` (wall clock)."""
    log_path = bed.dir / "reconciler" / "reconciler.log"
    entries = []
    for line in log_path.read_text().splitlines() if log_path.exists() else []:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") == "reconciled" and entry.get("ts", 0) >= since:
            entries.append({k: entry.get(k) for k in ("ts", "node", "seconds", "changed", "failed")})
    return entries


def daemon_pid(bed: Bed) -> int:
    return int((bed.dir / "reconciler" / "reconciler.pid").read_text())


def daemon_run(run: int, args, workdir: Path) -> dict:
    joins = args.joins
    with Bed(workdir, f"daemon-{run}", args.prefix, 3) as bed:
        bed.pods([("node0", "my-pod"), ("node1", "service-pod")])
        inventory = bed.inventory("daemon", {}, daemon=True)
        deploy_s, passes, _failures, _result = deploy(bed, inventory, args.deploy_passes)
        pid = daemon_pid(bed)
        names = [f"join{k}" for k in range(joins)]
        with LoadSampler() as load:
            started = time.monotonic()
            bed.apply("node0", [(name, "my-pod") for name in names])
            wait_until(lambda: all(s == "Connected" for s in (bed.statuses().get(
                (bed.testbed.node("node0").namespace, n)) for n in names)),
                timeout=args.connect_timeout * 3, what=f"{joins} servers Connected", interval=0.5)
            servers_s = time.monotonic() - started
            say(f"daemon run {run}: {joins} servers Connected {servers_s:.1f}s after one kubectl apply")
            floor = runner_floor(bed, inventory, args.floor_runs, bed.workdir)
            took, since = [], time.time()
            for name in names:
                started = time.monotonic()
                bed.apply("node1", [(name, "service-pod")])
                wait_until(lambda name=name: bed.status("node1", name) == "Connected",
                           timeout=args.connect_timeout, what=f"{name} Connected on node1", interval=0.05)
                took.append(time.monotonic() - started)
            runs = daemon_runs(bed, since)
        alive = Path(f"/proc/{pid}").exists()
        record = {"median_s": round(statistics.median(took), 2), "p95_s": round(p95(took), 2),
                  "max_s": round(max(took), 2), "joins_s": [round(t, 2) for t in took],
                  "floor_s": round(statistics.median(floor), 2), "floor_runs_s": [round(t, 2) for t in floor],
                  "deploy_with_daemon_s": round(deploy_s, 2), "deploy_passes": passes,
                  "servers_connected_s": round(servers_s, 2),
                  "daemon_runs_during_joins": len(runs),
                  "daemon_run_seconds_median": median([r["seconds"] for r in runs]),
                  "daemon_alive": alive, "load": load.summary()}
        say(f"daemon run {run}: apply->Connected median {record['median_s']}s p95 {record['p95_s']}s, "
            f"runner floor {record['floor_s']}s, daemon run median {record['daemon_run_seconds_median']}s")
        return record


# -- case 4: disruption of an existing tunnel --------------------------------------------------
def parse_ping(output: str) -> dict:
    replied = {int(m) for m in re.findall(r"bytes from .*icmp_seq=(\d+)", output)}
    summary = re.search(r"(\d+) packets transmitted, (\d+) received", output)
    transmitted, received = (int(summary.group(1)), int(summary.group(2))) if summary else (0, len(replied))
    # The last packet may still be in flight when ping is stopped: it is not counted as lost.
    lost = sorted(seq for seq in range(1, transmitted) if seq not in replied)
    return {"transmitted": transmitted, "received": received, "lost": len(lost), "lost_seqs": lost[:50]}


def disruption_run(run: int, args, workdir: Path) -> dict:
    joiners = args.joiners
    seed = [("node0", "my-pod"), ("node1", "service-pod"), ("node2", "worker-pod")]
    more = [(f"node{i}", f"joiner{i}") for i in range(3, 3 + joiners)]
    with Bed(workdir, f"disruption-{run}", args.prefix, 3 + joiners) as bed:
        bed.pods(seed + more)
        services = {node: [{"name": "myservice", "domain": "mydomain", "pod": pod}] for node, pod in seed}
        small = bed.inventory("seed", services)
        deploy(bed, small, args.deploy_passes)
        wait_until(lambda: bed.server_handshakes("node0", "my-pod") and
                   sum(bed.server_handshakes("node0", "my-pod").values()) >= 2,
                   timeout=args.connect_timeout, what="the seed network's handshakes")
        for node, pod in more:
            services[node] = [{"name": "myservice", "domain": "mydomain", "pod": pod}]
        large = bed.inventory("all", services)
        netns = bed.testbed.pod_netns("node1", "service-pod")
        with LoadSampler() as load:
            pinger = subprocess.Popen(["ip", "netns", "exec", netns, "ping", "-n", "-O", "-i", "0.05", "100.96.0.1"],
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                time.sleep(1.0)
                join_s, joined_result = ansible_playbook(bed, ROOT / "playbooks/deploy.yml", large, check=False)
                joined = sum(bed.server_handshakes("node0", "my-pod").values())
                statuses = bed.statuses()
                connected = sum(1 for s in statuses.values() if s == "Connected")
                leave = json.dumps({"dtservice_teardown_nodes": [node for node, _pod in more],
                                    "dtservice_teardown_networks": ["myservice"]})
                leave_s, left_result = ansible_playbook(bed, ROOT / "playbooks/teardown.yml", large, "-e", leave,
                                                        check=False)
                time.sleep(1.0)
            finally:
                pinger.send_signal(signal.SIGINT)
                output, _stderr = pinger.communicate(timeout=30)
        left = len(bed.statuses())
        record = {**parse_ping(output), "join_s": round(join_s, 2), "leave_s": round(leave_s, 2),
                  "connected_after_join": connected, "server_handshakes_after_join": joined,
                  "dtservices_after_leave": left, "load": load.summary(),
                  "join_failed": None if joined_result.returncode == 0 else
                  failure_text("deploy.yml", joined_result, join_s),
                  "leave_failed": None if left_result.returncode == 0 else
                  failure_text("teardown.yml", left_result, leave_s)}
        say(f"disruption run {run}: {record['lost']} of {record['transmitted']} lost; join {join_s:.1f}s "
            f"({connected} Connected), leave {leave_s:.1f}s ({left} dtServices left)")
        return record


# -- case 6: hub failover ------------------------------------------------------------------------
FAILOVER_PODS = {"node0": "p0", "node1": "p1", "node2": "p2", "node3": "p3"}
FAILOVER_INTERVAL = 0.05


def own_address(service: dict) -> str:
    return next(a for a, e in service["peers"].items() if "client" in e["labels"].values())


def failover_run(run: int, args, workdir: Path) -> dict:
    clients = ("node1", "node2", "node3")
    with Bed(workdir, f"failover-{run}", args.prefix, 4) as bed:
        bed.pods(FAILOVER_PODS.items())
        domains = [{"name": "mydomain", "members": list(FAILOVER_PODS)}]
        inventory = bed.testbed.write_inventory(bed.workdir / "failover.json", services={}, domains=domains,
                                                daemon=True)
        deploy(bed, inventory, args.deploy_passes)
        node0 = bed.testbed.node("node0")
        outages, handovers = [], []
        with LoadSampler() as load:
            for index in range(args.failovers):
                name = f"fail{index}"
                bed.apply("node0", [(name, "p0")])
                wait_until(lambda name=name: bed.status("node0", name) == "Connected", timeout=args.connect_timeout,
                           what=f"the hub of {name}")
                for node in clients:
                    bed.apply(node, [(name, FAILOVER_PODS[node])])
                for node in clients:
                    wait_until(lambda node=node, name=name: bed.status(node, name) == "Connected",
                               timeout=args.connect_timeout, what=f"{node} Connected in {name}")
                addresses = {}
                for node in clients:
                    bed_node = bed.testbed.node(node)
                    addresses[node] = own_address(bed.custom(bed_node.cluster).get_namespaced_custom_object(
                        GROUP, VERSION, bed_node.namespace, "dtservices", name))
                # plan.successor: the Connected client with the lowest address becomes the hub.
                successor = min(clients, key=lambda n: tuple(int(x) for x in addresses[n].split(".")))
                first, second = (n for n in clients if n != successor)
                log = bed.workdir / f"{name}.ping"
                with open(log, "w") as out:
                    pinger = subprocess.Popen(
                        ["ip", "netns", "exec", bed.testbed.pod_netns(first, FAILOVER_PODS[first]), "ping", "-n", "-D",
                         "-i", str(FAILOVER_INTERVAL), "-W", "1", addresses[second]],
                        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

                def replies(log: Path = log) -> list[float]:
                    return [float(m.group(1)) for m in re.finditer(r"^\[(\d+\.\d+)\] \d+ bytes from",
                                                                   log.read_text(), re.MULTILINE)]

                def resumed(after: float) -> bool:
                    later = [t for t in replies() if t > after]
                    return len(later) >= 5 and later[-1] - later[-5] < 1.0

                try:
                    wait_until(lambda: resumed(0), timeout=30, what="the ping loop")
                    gone = time.time()
                    bed.testbed.kubectl(node0, "delete", "dtservice", name, "-n", node0.namespace, "--wait=false",
                                        admin=True)
                    wait_until(lambda name=name, successor=successor: ((bed.custom(0).get_namespaced_custom_object(
                        GROUP, VERSION, node0.namespace, "dtdomains", "mydomain").get("status") or {}).get(
                        "networks", {}).get(name) or {}).get("server", {}).get("node") == successor,
                        timeout=args.connect_timeout, what=f"{successor} to serve {name}", interval=0.05)
                    handed = time.time()
                    wait_until(lambda handed=handed: resumed(handed), timeout=args.connect_timeout,
                               what="traffic between the clients to resume")
                finally:
                    pinger.send_signal(signal.SIGINT)
                    pinger.wait(timeout=30)
                times = replies()
                around = [t for t in times if t <= gone][-1:] + [t for t in times if t > gone]
                outage = max(0.0, max(b - a for a, b in zip(around, around[1:], strict=False)) - FAILOVER_INTERVAL)
                outages.append(outage)
                handovers.append(handed - gone)
                say(f"failover run {run}, {name}: {outage:.2f}s without traffic; {successor} named the hub after "
                    f"{handed - gone:.2f}s")
        record = {"median_s": round(statistics.median(outages), 2), "max_s": round(max(outages), 2),
                  "outages_s": [round(o, 2) for o in outages],
                  "handover_median_s": round(statistics.median(handovers), 2), "load": load.summary()}
        say(f"failover run {run}: no traffic for a median {record['median_s']}s (max {record['max_s']}s)")
        return record


# -- case 5: the daemon's memory ----------------------------------------------------------------
def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def memory_of(pid: int) -> dict:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _sep, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            fields[key] = int(value.split()[0])
    return {"rss_mib": round(fields["VmRSS"] / 1024, 1), "hwm_mib": round(fields["VmHWM"] / 1024, 1),
            "threads": fields["Threads"]}


def wait_settled(pid: int, quiet: float, timeout: float) -> float:
    """Wait until the daemon has had no run (no child process) for `quiet` seconds; returns the wait."""
    started = time.monotonic()
    last_busy = time.monotonic()
    while time.monotonic() - last_busy < quiet:
        if children_of(pid):
            last_busy = time.monotonic()
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"the daemon did not settle for {quiet:.0f}s within {timeout:.0f}s")
        time.sleep(0.1)
    return time.monotonic() - started


def memory_run(run: int, args, workdir: Path) -> dict:
    count = args.services
    with Bed(workdir, f"memory-{run}", args.prefix, 3) as bed:
        bed.pods([(f"node{i}", f"mem{i}") for i in range(3)])
        inventory = bed.inventory("daemon", {}, daemon=True)
        deploy(bed, inventory, args.deploy_passes)
        pid = daemon_pid(bed)
        with LoadSampler() as load:
            wait_settled(pid, args.settle, timeout=300)
            empty = memory_of(pid)
            by_node: dict[str, list[tuple[str, str]]] = {}
            for k in range(count):
                by_node.setdefault(f"node{k % 3}", []).append((f"net{k}", f"mem{k % 3}"))
            started = time.monotonic()
            for node, manifests in by_node.items():
                bed.apply(node, manifests)
            wait_until(lambda: sum(1 for s in bed.statuses().values() if s == "Connected") >= count,
                       timeout=max(300, count * 6), what=f"{count} dtServices Connected", interval=1)
            connected_s = time.monotonic() - started
            settle_s = wait_settled(pid, args.settle, timeout=300)
            idle = memory_of(pid)
        record = {"rss_mib": idle["rss_mib"], "hwm_mib": idle["hwm_mib"], "threads": idle["threads"],
                  "rss_mib_no_services": empty["rss_mib"], "services": count, "with_running_pods": True,
                  "all_connected_s": round(connected_s, 2), "settle_wait_s": round(settle_s, 2),
                  "load": load.summary()}
        say(f"memory run {run}: RSS {idle['rss_mib']} MiB with {count} dtServices "
            f"({empty['rss_mib']} MiB with none), peak {idle['hwm_mib']} MiB")
        return record


# -- the report ---------------------------------------------------------------------------------
def runs_of(results: dict, case: str, label: str | None = None) -> list[dict]:
    entry = results["cases"].get(case, {})
    return (entry.get(label, {}) if label else entry).get("runs", [])


def failures(results: dict, case: str, label: str | None = None) -> int:
    entry = results["cases"].get(case, {})
    return len((entry.get(label, {}) if label else entry).get("failures", []))


def summarize(results: dict, args) -> tuple[list[list[str]], list[dict]]:
    rows: list[list[str]] = []
    targets: list[dict] = []

    def fmt(value, unit="") -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.2f}{unit}"
        return f"{value}{unit}"

    def row(case, metric, value, target="", met=None, *, load=None, runs=None):
        rows.append([case, metric, value, target, "" if met is None else ("yes" if met else "NO"),
                     "" if load is None else f"{load:.2f}", "" if runs is None else runs])

    def ok(runs, case, label=None) -> str:
        failed = failures(results, case, label)
        return f"{len(runs)}" + (f" +{failed} failed" if failed else "")

    def load_of(runs, key=None) -> float | None:
        values = [(r[key] if key else r)["load"]["mean_1m"] for r in runs]
        return statistics.mean(values) if values else None

    configs = scaling_configs(args)
    deploy_median = {}
    if "deploy" in results["cases"]:
        for cfg in configs:
            runs = [r["deploy"] for r in runs_of(results, "deploy", cfg["label"])]
            if not runs:
                row(f"deploy {cfg['label']}", "failed", "see JSON", runs=ok(runs, "deploy", cfg["label"]))
                continue
            wall = median([r["wall_s"] for r in runs])
            deploy_median[cfg["label"]] = wall
            api = median([r["api"]["total"] for r in runs])
            verbs = Counter()
            for r in runs:
                verbs.update(r["api"]["by_verb"])
            verbs_text = " ".join(f"{v}:{round(n / len(runs))}" for v, n in sorted(verbs.items()))
            again = sum(1 for r in runs if r.get("passes", 1) > 1)
            row(f"deploy {cfg['label']}", "to Connected s (playbook s)",
                f"{fmt(wall)} ({fmt(median([r['playbook_s'] for r in runs]))})"
                + (f"; {again} run(s) needed a 2nd deploy pass" if again else ""),
                load=load_of(runs), runs=ok(runs, "deploy", cfg["label"]))
            row(f"deploy {cfg['label']}", "API requests", f"{fmt(api)} [{verbs_text}]")
            results["cases"]["deploy"][cfg["label"]]["median"] = {
                "wall_s": wall, "playbook_s": median([r["playbook_s"] for r in runs]), "api_total": api}
        big, small = max(args.peers), min(args.peers)
        if f"P={big}" in deploy_median and f"P={small}" in deploy_median:
            ratio = deploy_median[f"P={big}"] / deploy_median[f"P={small}"]
            met = ratio <= 3
            label = f"t(P={big})/t(P={small})"
            row("deploy", label, fmt(ratio), "<= 3", met)
            targets.append({"target": f"{label} <= 3", "value": round(ratio, 2), "met": met})

    if "noop" in args.cases and "deploy" in results["cases"]:
        per_node = {}
        all_reads = True
        for cfg in configs:
            runs = [r["noop"] for r in runs_of(results, "deploy", cfg["label"]) if "noop" in r]
            if not runs:
                continue
            wall, floor = median([r["wall_s"] for r in runs]), median([r["floor_s"] for r in runs])
            ratio = wall / floor
            changed = max(r["changed"] for r in runs)
            writes = max(r["writes"] for r in runs)
            reads = median([r["reads_per_node"] for r in runs])
            per_node[cfg["label"]] = reads
            all_reads = all_reads and writes == 0
            verbs = Counter()
            for r in runs:
                verbs.update(r["api"]["by_verb"])
            verbs_text = " ".join(f"{v}:{round(n / len(runs))}" for v, n in sorted(verbs.items()))
            results["cases"]["deploy"][cfg["label"]]["noop_median"] = {
                "wall_s": wall, "floor_s": floor, "ratio": ratio, "reads_per_node": reads}
            # Issue 15: 1.5x at P=3, 2x at P=100 (where the empty playbook's floor is no larger).
            bound = 2.0 if cfg["nodes"] >= 100 else 1.5
            row(f"no-op {cfg['label']}", "s / floor s", f"{fmt(wall)} / {fmt(floor)} = {ratio:.2f}x", f"<= {bound}x",
                ratio <= bound, load=load_of(runs), runs=ok(runs, "deploy", cfg["label"]))
            paired = [[round(n / f, 2) for n, f in r["pairs"]] for r in runs if "pairs" in r]
            if paired:  # results of before the pairs have one of each
                row(f"no-op {cfg['label']}", "each run's pairs: no-op / empty", "; ".join(
                    " ".join(f"{ratio:.2f}x" for ratio in run_ratios) for run_ratios in paired))
            row(f"no-op {cfg['label']}", "changed (max over runs)", str(changed), "0", changed == 0)
            floors = [r for r in runs if "skeleton_s" in r]  # results of before the floor's parts lack them
            if floors:
                skeleton = median([r["skeleton_s"] for r in floors])
                alone = median([r["requests_alone_s"] for r in floors])
                results["cases"]["deploy"][cfg["label"]]["noop_median"].update(
                    skeleton_s=skeleton, requests_alone_s=alone)
                row(f"no-op {cfg['label']}", "floor's parts: skeleton s; its reads alone s",
                    f"{fmt(skeleton)} ({skeleton / floor:.2f}x); {fmt(alone)}")
            row(f"no-op {cfg['label']}", "API [by verb]; reads/node",
                f"[{verbs_text}]; {fmt(reads)}/node", "reads only", writes == 0)
            targets.append({"target": f"no-op {cfg['label']} <= {bound}x floor", "value": round(ratio, 2),
                            "met": ratio <= bound})
            targets.append({"target": f"no-op {cfg['label']} changed=0", "value": changed, "met": changed == 0})
        if per_node:
            peer_labels = [f"P={p}" for p in sorted(args.peers) if f"P={p}" in per_node]
            growth = per_node[peer_labels[-1]] / per_node[peer_labels[0]] if len(peer_labels) > 1 else 1.0
            met = all_reads and growth <= 1.5
            row("no-op", f"reads/node {peer_labels[-1]} vs {peer_labels[0]}", f"{growth:.2f}x, writes: "
                f"{'none' if all_reads else 'SOME'}", "reads only, <= 1.5x", met)
            targets.append({"target": "no-op makes only reads, a bounded number per node "
                            "(reads/node at the largest P <= 1.5x the smallest P)",
                            "value": {"reads_per_node": per_node, "growth": round(growth, 2),
                                      "only_reads": all_reads}, "met": met})

    if "daemon" in results["cases"]:
        runs = runs_of(results, "daemon")
        if runs:
            med, tail = median([r["median_s"] for r in runs]), median([r["p95_s"] for r in runs])
            floor = median([r["floor_s"] for r in runs])
            # Issue 15: median <= floor + 0.5 s, p95 <= floor + 1.5 s.
            met = med <= floor + 0.5 and tail <= floor + 1.5
            results["cases"]["daemon"]["median"] = {"median_s": med, "p95_s": tail, "floor_s": floor}
            row("daemon", f"apply->Connected median / p95 s ({args.joins} joins)", f"{fmt(med)} / {fmt(tail)}",
                f"<= {floor + 0.5:.2f} / {floor + 1.5:.2f}", met, load=load_of(runs), runs=ok(runs, "daemon"))
            row("daemon", "floor: empty ansible-runner run s", fmt(floor))
            row("daemon", "daemon's reconcile run s (median)",
                fmt(median([r["daemon_run_seconds_median"] for r in runs])))
            targets.append({"target": "daemon apply-to-Connected median <= floor + 0.5 s, p95 <= floor + 1.5 s",
                            "value": {"median_s": med, "p95_s": tail, "floor_s": floor}, "met": met})
        else:
            row("daemon", "failed", "see JSON", runs=ok(runs, "daemon"))

    if "disruption" in results["cases"]:
        runs = runs_of(results, "disruption")
        if runs:
            lost = max(r["lost"] for r in runs)
            results["cases"]["disruption"]["median"] = {
                "lost": median([r["lost"] for r in runs]), "max_lost": lost,
                "join_s": median([r["join_s"] for r in runs]), "leave_s": median([r["leave_s"] for r in runs])}
            row("disruption", f"packets lost (max; of ~{median([r['transmitted'] for r in runs]):.0f})",
                str(lost), "0", lost == 0, load=load_of(runs), runs=ok(runs, "disruption"))
            broken = sum(1 for r in runs if r.get("join_failed") or r.get("leave_failed"))
            row("disruption", f"{args.joiners} join s / leave s",
                f"{fmt(median([r['join_s'] for r in runs]))} / {fmt(median([r['leave_s'] for r in runs]))}"
                + (f"; the join or leave playbook failed in {broken} run(s)" if broken else ""))
            targets.append({"target": "zero packets lost", "value": lost, "met": lost == 0})
        else:
            row("disruption", "failed", "see JSON", runs=ok(runs, "disruption"))

    if "memory" in results["cases"]:
        runs = runs_of(results, "memory")
        if runs:
            rss = median([r["rss_mib"] for r in runs])
            met = rss <= 150
            results["cases"]["memory"]["median"] = {"rss_mib": rss}
            row("memory", f"daemon RSS MiB, {args.services} dtServices (running pods)", fmt(rss), "<= 150", met,
                load=load_of(runs), runs=ok(runs, "memory"))
            row("memory", "daemon RSS MiB with none / peak", f"{fmt(median([r['rss_mib_no_services'] for r in runs]))}"
                f" / {fmt(median([r['hwm_mib'] for r in runs]))}")
            targets.append({"target": "daemon RSS <= 150 MiB", "value": rss, "met": met})
        else:
            row("memory", "failed", "see JSON", runs=ok(runs, "memory"))
    if "failover" in results["cases"]:
        runs = runs_of(results, "failover")
        if runs:
            med = median([r["median_s"] for r in runs])
            met = med < 5
            results["cases"]["failover"]["median"] = {"median_s": med,
                                                      "max_s": max(r["max_s"] for r in runs),
                                                      "handover_median_s": median([r["handover_median_s"]
                                                                                   for r in runs])}
            row("failover", f"no traffic after the hub's deletion s ({args.failovers} per run)", fmt(med), "< 5",
                met, load=load_of(runs), runs=ok(runs, "failover"))
            row("failover", "deletion to the new hub in the registry s",
                fmt(results["cases"]["failover"]["median"]["handover_median_s"]))
            targets.append({"target": "hub failover outage < 5 s", "value": med, "met": met})
        else:
            row("failover", "failed", "see JSON", runs=ok(runs, "failover"))
    return rows, targets


def print_table(rows: list[list[str]]) -> None:
    header = ["case", "metric", "median", "target", "met", "load1m", "runs"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for r in rows:
        print(line.format(*r))


# -- main ---------------------------------------------------------------------------------------
def measure(entry: dict, function: Callable[[], dict], retries: int) -> None:
    """Run one measurement into entry["runs"]; a failed attempt goes to entry["failures"] and is
    tried again up to `retries` times. Ctrl-C goes on up (after the bed is stopped)."""
    for attempt in range(retries + 1):
        started = time.monotonic()
        try:
            record = function()
        except Exception as error:
            say(f"FAILED (attempt {attempt + 1}): {str(error)[:2000]}")
            entry.setdefault("failures", []).append({
                "error": f"{type(error).__name__}: {error}"[-6000:], "trace": traceback.format_exc()[-3000:],
                "run_s": round(time.monotonic() - started, 1), "load": [round(x, 2) for x in os.getloadavg()]})
            continue
        record["run_s"] = round(time.monotonic() - started, 1)
        entry["runs"].append(record)
        return


def reason(error: str) -> str:
    """The short why of a failed run: a module's message if there is one, else the first line."""
    lines = error.splitlines()
    return " | ".join(line[:300] for line in lines[:3])


def report(path: Path) -> int:
    """The table of an earlier results file, its API requests classified by the current rules."""
    results = json.loads(path.read_text())
    args = argparse.Namespace(**results["args"])
    for entry in results["cases"].get("deploy", {}).values():
        for run in entry.get("runs", []):
            for phase in ("deploy", "noop"):
                if phase in run:
                    api = run[phase]["api"]
                    run[phase]["api"] = classify(api["by_resource"], api.get("excluded_noise"))
            if "noop" in run:
                by_verb = run["noop"]["api"]["by_verb"]
                run["noop"]["writes"] = sum(n for v, n in by_verb.items() if v not in READ_VERBS)
                run["noop"]["reads_per_node"] = round(
                    sum(n for v, n in by_verb.items() if v in READ_VERBS) / entry["config"]["nodes"], 1)
    rows, targets = summarize(results, args)
    results["table"], results["targets"] = rows, targets
    path.write_text(json.dumps(results, indent=2, default=str))
    print_table(rows)
    print(f"\n{path} (measured at {results['git']['head']}; runtime {results['runtime_s']:.0f}s; load average at "
          f"start {results['host']['load_at_start']}, at end {results['host']['load_at_end']})")
    return 0


def git_state() -> dict:
    """The commit measured and the files that differ from it (read-only git calls)."""
    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()
    return {"head": git("rev-parse", "--short", "HEAD"), "subject": git("log", "-1", "--format=%s"),
            "dirty": git("status", "--porcelain", "--untracked-files=no").splitlines()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs per case (the median is reported)")
    parser.add_argument("--noop-pairs", type=int, default=3,
                        help="no-op runs per bed, each followed by an empty playbook's; a run's figures are "
                             "their medians")
    parser.add_argument("--cases", default=",".join(ALL_CASES), help=f"comma-separated, of {', '.join(ALL_CASES)}")
    parser.add_argument("--quick", action="store_true", help="a smoke version: P=3,10; 5 networks, joins, "
                        "joiners; 30 dtServices")
    parser.add_argument("--peers", help="comma-separated P of the deploy case (default 3,30,100)")
    parser.add_argument("--p100-runs", type=int, help="runs of the largest P >= 100 (default --runs)")
    parser.add_argument("--networks", type=int, help="networks of 3 peers in the deploy case (default 20; 0: none)")
    parser.add_argument("--joins", type=int, help="daemon joins (default 20)")
    parser.add_argument("--joiners", type=int, help="peers joining and leaving in the disruption case (default 20)")
    parser.add_argument("--services", type=int, help="dtServices of the memory case (default 100)")
    parser.add_argument("--failovers", type=int, help="hub deletions per failover run (default 5)")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds without a daemon run before RSS")
    parser.add_argument("--floor-runs", type=int, default=5, help="empty ansible-runner runs per daemon run")
    parser.add_argument("--connect-timeout", type=float, default=120.0)
    parser.add_argument("--quiet-below", type=float, default=0.25,
                        help="before the first deploy of a bed, wait (at most 120 s) until at most this share "
                             "of all cores' time is busy")
    parser.add_argument("--deploy-passes", type=int, default=2,
                        help="deploy.yml runs allowed (and timed) until it succeeds, as a user re-runs a failed deploy")
    parser.add_argument("--retries", type=int, default=1,
                        help="a failed run is recorded and tried again this many times")
    parser.add_argument("--prefix", default="dtbench-", help="network namespace prefix of the benchmark's beds")
    parser.add_argument("--out", help="JSON path (default bench/results/<timestamp>.json)")
    parser.add_argument("--report", metavar="JSON", help="print the table of a results file again (no runs)")
    args = parser.parse_args(argv)
    if args.report:
        return report(Path(args.report))
    quick = args.quick
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(args.cases) - set(ALL_CASES)
    if unknown:
        parser.error(f"unknown case(s) {sorted(unknown)}; cases are {', '.join(ALL_CASES)}")
    args.peers = [int(p) for p in args.peers.split(",")] if args.peers else ([3, 10] if quick else [3, 30, 100])
    args.p100_runs = args.p100_runs or args.runs
    args.networks = args.networks if args.networks is not None else (5 if quick else 20)
    args.joins = args.joins or (5 if quick else 20)
    args.joiners = args.joiners or (5 if quick else 20)
    args.services = args.services or (30 if quick else 100)
    args.failovers = args.failovers or (2 if quick else 5)
    if args.noop_pairs < 1:
        parser.error("--noop-pairs must be at least 1")
    if os.geteuid() != 0:
        parser.error("the benchmarks make network namespaces: run them as root")
    if not os.environ.get("DTSERVICE_CONTROLPLANE_BIN"):
        parser.error("DTSERVICE_CONTROLPLANE_BIN is not set: run bench/run (it sources .dtservice.env)")
    leftovers = [n for n in list_netns() if n.startswith(args.prefix)]
    if leftovers:
        say(f"removing {len(leftovers)} network namespace(s) a crashed benchmark left ({args.prefix}*)")
        with tempfile.TemporaryDirectory(prefix="dtbench-cleanup-") as scratch:
            Testbed(Path(scratch) / "bed", prefix=args.prefix).stop()

    def interrupt(signum, _frame) -> None:
        raise KeyboardInterrupt(f"signal {signum}")
    # Also when started in the background (SIGINT ignored): Ctrl-C, kill -INT and kill -TERM all
    # stop the beds and report what was measured.
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else BENCH / "results" / f"{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    results: dict = {"started": datetime.datetime.now().isoformat(timespec="seconds"), "quick": quick,
                     "args": dict(vars(args)),
                     "host": {"cpus": os.cpu_count(), "load_at_start": [round(x, 2) for x in os.getloadavg()]},
                     "git": git_state(),
                     "cases": {}}
    workdir = Path(tempfile.mkdtemp(prefix="dtbench-"))
    started = time.monotonic()
    interrupted = False
    try:
        if "deploy" in args.cases or "noop" in args.cases:
            results["cases"]["deploy"] = {}
            for cfg in scaling_configs(args):
                entry = results["cases"]["deploy"].setdefault(cfg["label"], {"config": cfg, "runs": []})
                for run in range(cfg["runs"]):
                    say(f"deploy {cfg['label']} run {run + 1}/{cfg['runs']}")
                    measure(entry, lambda cfg=cfg, run=run: scaling_run(cfg, run, args, workdir), args.retries)
        for case, function in (("daemon", daemon_run), ("disruption", disruption_run), ("memory", memory_run),
                               ("failover", failover_run)):
            if case not in args.cases:
                continue
            entry = results["cases"].setdefault(case, {"runs": []})
            for run in range(args.runs):
                say(f"{case} run {run + 1}/{args.runs}")
                measure(entry, lambda function=function, run=run: function(run, args, workdir), args.retries)
    except KeyboardInterrupt:
        interrupted = True
        say("interrupted: the beds are stopped; reporting what was measured")
    finally:
        results["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
        results["runtime_s"] = round(time.monotonic() - started, 1)
        results["host"]["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
        results["interrupted"] = interrupted
        results["git_at_end"] = git_state()
        rows, targets = summarize(results, args)
        results["table"] = rows
        results["targets"] = targets
        out.write_text(json.dumps(results, indent=2, default=str))
        print_table(rows)
        for case, entry in results["cases"].items():
            for label, sub in ([(case, entry)] if "runs" in entry else [(f"{case} {k}", v) for k, v in entry.items()]):
                for failure in sub.get("failures", []):
                    print(f"failed run of {label}: {reason(failure['error'])}")
        git = results["git"]
        print(f"measured at {git['head']} ({git['subject']}); {len(git['dirty'])} file(s) changed in the tree"
              + ("" if results["git_at_end"]["head"] == git["head"] else
                 f"; HEAD moved to {results['git_at_end']['head']} during the run"))
        print(f"\nruntime {results['runtime_s']:.0f}s; load average at start {results['host']['load_at_start']}, "
              f"at end {results['host']['load_at_end']}; JSON: {out}")
        shutil.rmtree(workdir, ignore_errors=True)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
