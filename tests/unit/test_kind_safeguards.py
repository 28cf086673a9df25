"""The kind platform's safeguards, checked offline like the rest of the kind manifests: rendered with
render_kind.yml -e kind_cluster_safeguards=true, validated strictly against the node image's Kubernetes
schemas, and their wiring checked (PDB quorum, anti-affinity, peer policy, snapshot CronJob, alert rules)."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "kind_cluster"
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
K8S_VERSION = DEFAULTS["kind_cluster_kubernetes_version"]
RULES = ROOT / "roles/safeguards/files/prometheus/etcd-alerts.yml"
WATCH = ROOT / "roles/safeguards/files/lab_watch.py"


def render(tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(
        [
            str(ROOT / ".venv/bin/ansible-playbook"),
            "playbooks/render_kind.yml",
            "-e",
            f"lab_render_dir={tmp}",
            "-e",
            "kind_cluster_safeguards=true",
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def objects(path: Path) -> list[dict]:
    return [o for o in yaml.safe_load_all(path.read_text()) if o]


@pytest.fixture(scope="module", params=[(3, True), (5, False)], ids=["3-members-tls", "5-members-plain"])
def rendered(request, tmp_path_factory):
    members, tls = request.param
    tmp = tmp_path_factory.mktemp(f"kind-safeguards-{members}")
    proc = render(
        tmp,
        "-e",
        f"lab_members={members}",
        "-e",
        f"kind_cluster_workers={max(3, members)}",
        "-e",
        f"lab_tls={str(tls).lower()}",
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    lab = objects(tmp / "30-etcd-statefulset.yaml")[0]
    safe = objects(tmp / "safeguards" / "91-safeguards.yaml")
    sts = objects(tmp / "safeguards" / "90-etcd-statefulset.yaml")[0]
    return {"members": members, "tls": tls, "lab_sts": lab, "sts": sts, "objects": safe, "dir": tmp}


def one(rendered: dict, kind: str) -> dict:
    found = [o for o in rendered["objects"] if o["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_every_kubernetes_object_validates_strictly(rendered):
    failures = []
    for obj in [rendered["sts"], *rendered["objects"]]:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD of the Prometheus Operator: checked against the rules file below
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{obj['kind']} {obj['metadata']['name']}: {exc.message}")
    assert not failures, failures
    kinds = sorted(o["kind"] for o in rendered["objects"])
    assert kinds == sorted(
        [
            "PodDisruptionBudget",
            "NetworkPolicy",
            "Service",
            "PersistentVolumeClaim",
            "ConfigMap",
            "CronJob",
            "PrometheusRule",
        ]
    )


def test_pdb_keeps_a_quorum_of_the_members(rendered):
    pdb = one(rendered, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == rendered["members"] // 2 + 1
    assert matches(pdb["spec"]["selector"], rendered["sts"]["spec"]["template"]["metadata"]["labels"])
    assert not matches(pdb["spec"]["selector"], {"component": "etcd", "tier": "control-plane"})


def test_statefulset_differs_only_by_required_anti_affinity(rendered):
    sts, lab = copy.deepcopy(rendered["sts"]), copy.deepcopy(rendered["lab_sts"])
    anti = sts["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert "preferredDuringSchedulingIgnoredDuringExecution" not in anti
    (term,) = anti["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert matches(term["labelSelector"], sts["spec"]["template"]["metadata"]["labels"])
    assert (
        "requiredDuringSchedulingIgnoredDuringExecution"
        not in (lab["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"])
    )
    for obj in (sts, lab):
        del obj["spec"]["template"]["spec"]["affinity"]
    assert sts == lab


def test_peer_policy_allows_both_ports_between_etcd_pods_only(rendered):
    policy = one(rendered, "NetworkPolicy")
    labels = rendered["sts"]["spec"]["template"]["metadata"]["labels"]
    assert matches(policy["spec"]["podSelector"], labels)
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    client = DEFAULTS["kind_cluster_client_port"]
    peer = DEFAULTS["kind_cluster_peer_port"]
    open_ingress = [r for r in policy["spec"]["ingress"] if "from" not in r]
    # Clients from anywhere; with TLS also the probes' plain-HTTP metrics port (the kubelet has no cert).
    metrics = [DEFAULTS["kind_cluster_metrics_port"]] if rendered["tls"] else []
    assert [p["port"] for r in open_ingress for p in r["ports"]] == [client, *metrics]
    peer_rules = [r for r in policy["spec"]["ingress"] if "from" in r]
    assert [p["port"] for r in peer_rules for p in r["ports"]] == [peer]
    assert all(matches(f["podSelector"], labels) for r in peer_rules for f in r["from"])
    egress_peer = [r for r in policy["spec"]["egress"] if "to" in r]
    assert {p["port"] for r in egress_peer for p in r["ports"]} == {client, peer}
    assert all(matches(t["podSelector"], labels) for r in egress_peer for t in r["to"])


def test_snapshot_cronjob_saves_from_a_ready_member_and_rotates(rendered):
    service = one(rendered, "Service")
    assert service["spec"]["publishNotReadyAddresses"] is False
    assert matches(
        {"matchLabels": service["spec"]["selector"]},
        rendered["sts"]["spec"]["template"]["metadata"]["labels"],
    )
    cron = one(rendered, "CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (save,) = pod["initContainers"]
    ns = yaml.safe_load((ROLE.parents[1] / "inventory/local/group_vars/all/kind.yml").read_text())[
        "lab_kind_namespace"
    ]
    scheme = "https" if rendered["tls"] else "http"
    endpoint = f"--endpoints={scheme}://{service['metadata']['name']}.{ns}.svc.cluster.local:{DEFAULTS['kind_cluster_client_port']}"
    assert save["command"][:2] == ["/usr/local/bin/etcdctl", endpoint]
    # With TLS etcdctl finds the client certificate through its variables, in the Secret mounted read-only.
    env = {e["name"]: e["value"] for e in save.get("env", [])}
    volumes = {v["name"]: v for v in pod["volumes"]}
    files = {
        f"{m['mountPath']}/{i['path']}": (volumes[m["name"]]["secret"]["secretName"], i["key"], i.get("mode"))
        for m in save["volumeMounts"]
        if "secret" in volumes[m["name"]]
        for i in volumes[m["name"]]["secret"]["items"]
    }
    if rendered["tls"]:
        assert files[env["ETCDCTL_CACERT"]][:2] == ("etcd-lab-client", "ca.crt")
        assert files[env["ETCDCTL_CERT"]][:2] == ("etcd-lab-client", "tls.crt")
        assert files[env["ETCDCTL_KEY"]] == ("etcd-lab-client", "tls.key", 0o400)
    else:
        assert not env and not files
    assert save["command"][-3:] == ["snapshot", "save", "/snapshots/incoming.db"]
    (rotate,) = pod["containers"]
    assert rotate["command"][2:4] == ["rotate", "--out=/snapshots"]
    pvc = one(rendered, "PersistentVolumeClaim")
    assert volumes["snapshots"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    cm = one(rendered, "ConfigMap")
    assert volumes["scripts"]["configMap"]["name"] == cm["metadata"]["name"]
    script_dir, _, script = rotate["command"][1].rpartition("/")
    assert any(m["mountPath"] == script_dir and m["name"] == "scripts" for m in rotate["volumeMounts"])
    assert cm["data"][script] == WATCH.read_text()


def test_prometheus_rule_carries_the_tested_rules(rendered, tmp_path):
    rule = one(rendered, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found (Debian package prometheus)"
    extracted = tmp_path / "rules.yml"
    extracted.write_text(yaml.safe_dump(rule["spec"]))
    proc = subprocess.run([promtool, "check", "rules", str(extracted)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_required_anti_affinity_needs_a_worker_per_member(tmp_path):
    proc = render(tmp_path, "-e", "lab_members=5", "-e", "kind_cluster_workers=3")
    assert proc.returncode != 0
    assert "5 members need 5 workers, the kind config has 3" in proc.stdout
    assert not (tmp_path / "safeguards").exists()
