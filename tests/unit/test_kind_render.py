"""The kind platform, checked offline: render_kind.yml's manifests against the schemas and each other.

Nothing here starts a cluster. The playbook renders the manifests of a 3- and a 5-member TLS lab (the
default) and of a 3-member plain one (in parallel, to keep the module under a minute); every Kubernetes
object is validated in strict mode against the schemas of the pinned node image's Kubernetes version, then
the wiring is checked the way the API server and kubelet would resolve it: selectors against the pods the
controllers create, ports, probes, volumes, ConfigMap and Secret keys, the per-member override, the
NetworkPolicies as an allow-list, the kind port mappings; on the TLS renders, the certificates in the
Secrets themselves (names, usages, CA, keys) and the files' modes. The helper scripts that run in the
containers are taken from the rendered ConfigMaps and run here on temporary directories.
"""

from __future__ import annotations

import base64
import fcntl
import importlib.util
import os
import re
import shlex
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from lab_plan import build_plan

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "playbooks" / "render_kind.yml"
ROLE = ROOT / "roles" / "kind_cluster"
ANSIBLE_PLAYBOOK = ROOT / ".venv" / "bin" / "ansible-playbook"
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
ROLE_VARS = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
K8S_VERSION = DEFAULTS["kind_cluster_kubernetes_version"]
# The kind platform's settings are declared once, in the inventory's group_vars (the roles default to them).
KIND_VARS = yaml.safe_load((ROOT / "inventory" / "local" / "group_vars" / "all" / "kind.yml").read_text())
NAMESPACE = KIND_VARS["lab_kind_namespace"]
CLIENT_PORT = DEFAULTS["kind_cluster_client_port"]
PEER_PORT = DEFAULTS["kind_cluster_peer_port"]
METRICS_PORT = DEFAULTS["kind_cluster_metrics_port"]
PORT_BASE = DEFAULTS["kind_cluster_client_node_port_base"]
PKI_MOUNT = ROLE_VARS["kind_cluster_pki_mount"]
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
# (members, TLS): the first renders with lab_tls unset and no LAB_TLS: TLS is the default.
VARIANTS = ((3, True), (5, True), (3, False))
BAD_INPUT = {
    "no render dir": ([], "lab_render_dir is not set"),
    "even size": (["-e", "lab_members=4"], "lab_members=4 is even"),
    "not a number": (["-e", "lab_members=three"], "lab_members=three is not a whole number"),
    "unknown skewed member": (["-e", "lab_skewed_member=etcd-9"], "lab_skewed_member=etcd-9 is not a member"),
}
# Pods that the kind cluster runs in the namespace by itself; no lab selector may pick them.
SYSTEM_PODS = [
    {"name": "etcd-sblab-control-plane", "labels": {"component": "etcd", "tier": "control-plane"}},
    {"name": "coredns-1", "labels": {"k8s-app": "kube-dns"}},
]


@dataclass
class Render:
    members: int
    tls: bool
    dir: Path
    plan: dict
    kind_config: dict = field(default_factory=dict)
    objects: list[dict] = field(default_factory=list)

    def get(self, kind: str, name: str | None = None) -> list[dict]:
        return [o for o in self.objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]

    def one(self, kind: str, name: str) -> dict:
        found = self.get(kind, name)
        assert found, f"no {kind} {name} rendered"
        return found[-1]  # a later file (applied later) replaces an earlier one of the same name


def _playbook(*args: str) -> subprocess.Popen:
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "PYTHONWARNINGS": "ignore"}
    env.pop("LAB_TLS", None)
    return subprocess.Popen(
        [str(ANSIBLE_PLAYBOOK), str(PLAYBOOK), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every playbook run of this module, started together: the renders and the bad-input runs."""
    base = tmp_path_factory.mktemp("kind-render")
    procs = {}
    for index, (size, tls) in enumerate(VARIANTS):
        tls_arg = [] if index == 0 else ["-e", f"lab_tls={str(tls).lower()}"]
        procs[(size, tls)] = _playbook(
            "-e", f"lab_render_dir={base}/{size}-{tls}", "-e", f"lab_members={size}", *tls_arg
        )
    for label, (args, _msg) in BAD_INPUT.items():
        render_dir = [] if label == "no render dir" else ["-e", f"lab_render_dir={base}/bad-{len(procs)}"]
        procs[label] = (_playbook(*render_dir, *args), base / f"bad-{len(procs)}")
    out = {}
    for key, proc in procs.items():
        proc, bad_dir = proc if isinstance(proc, tuple) else (proc, None)
        stdout, _ = proc.communicate(timeout=170)
        default_dir = base / (f"{key[0]}-{key[1]}" if isinstance(key, tuple) else str(key))
        out[key] = (proc.returncode, stdout, bad_dir if bad_dir is not None else default_dir)
    return out


@pytest.fixture(
    scope="module", params=VARIANTS, ids=[f"{n}-members-{'tls' if t else 'plain'}" for n, t in VARIANTS]
)
def render(request, runs) -> Render:
    size, tls = request.param
    rc, stdout, out_dir = runs[(size, tls)]
    assert rc == 0, f"render_kind.yml failed for {size} members, TLS {tls}:\n{stdout[-3000:]}"
    plan = build_plan(
        platform="kind",
        members=size,
        allow_even=False,
        name="sblab",
        subnet="198.18.213.0/24",
        isolated=[],
        forced="",
        tls_dir=str(out_dir / "pki") if tls else None,
    )
    result = Render(size, tls, out_dir, plan)
    result.kind_config = yaml.safe_load((out_dir / "kind-cluster.yaml").read_text())
    for path in sorted(out_dir.glob("[0-9][0-9]-*.yaml")):
        result.objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert result.objects, f"no manifests in {out_dir}"
    return result


# --- how the controllers and the API server see the objects -----------------------------------------------


def matches(selector: dict | None, labels: dict) -> bool:
    """A label selector (matchLabels/matchExpressions) or a Service's plain selector against labels."""
    if selector is None:
        return False
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        return all(labels.get(k) == v for k, v in selector.items())
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def pods(render: Render) -> list[dict]:
    """The pods the controllers would create (the StatefulSet adds the pod-name label), plus bare Pods."""
    out = []
    for sts in render.get("StatefulSet"):
        tmpl = sts["spec"]["template"]
        for i in range(sts["spec"]["replicas"]):
            name = f"{sts['metadata']['name']}-{i}"
            labels = {
                **tmpl["metadata"]["labels"],
                POD_NAME_LABEL: name,
                "apps.kubernetes.io/pod-index": str(i),
            }
            out.append({"name": name, "labels": labels, "spec": tmpl["spec"], "owner": sts})
    for kind in ("Deployment", "Job"):
        for obj in render.get(kind):
            tmpl = obj["spec"]["template"]
            name = f"{obj['metadata']['name']}-pod"
            out.append(
                {"name": name, "labels": tmpl["metadata"]["labels"], "spec": tmpl["spec"], "owner": obj}
            )
    for pod in render.get("Pod"):
        out.append(
            {"name": pod["metadata"]["name"], "labels": pod["metadata"]["labels"], "spec": pod["spec"]}
        )
    return out


def etcd_pods(render: Render) -> list[dict]:
    return [p for p in pods(render) if p.get("owner", {}).get("kind") == "StatefulSet"]


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


def resolve_port(container: dict, port) -> int | None:
    for p in container.get("ports", []):
        if port in (p.get("name"), p["containerPort"]):
            return p["containerPort"]
    return None


def load_script(name: str, source: str, tmp_path: Path):
    """Import a helper script from its rendered ConfigMap text."""
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"rendered_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- schemas, images, the kind config ---------------------------------------------------------------------


def test_node_image_is_the_validated_kubernetes_version(render):
    images = {node["image"] for node in render.kind_config["nodes"]}
    assert len(images) == 1
    image = images.pop()
    assert re.fullmatch(rf"kindest/node:v{re.escape(K8S_VERSION)}@sha256:[0-9a-f]{{64}}", image), image


def test_every_manifest_validates_strictly(render):
    failures = []
    for obj in render.objects:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{obj['kind']} {obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert not failures, "\n".join(failures)
    assert {o["metadata"].get("namespace") for o in render.objects} == {NAMESPACE}


def test_images_are_pinned(render):
    images = {c["image"] for p in pods(render) for c in containers(p["spec"])}
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag and tag not in ("", "latest"), f"{image} is not pinned to a tag"
    etcd = {c["image"] for p in etcd_pods(render) for c in p["spec"]["containers"] if c["name"] == "etcd"}
    assert len(etcd) == 1 and re.fullmatch(r"gcr\.io/etcd-development/etcd:v3\.5\.\d+", etcd.pop())


def test_kind_config_maps_every_client_node_port(render):
    config = render.kind_config
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    roles = [n["role"] for n in config["nodes"]]
    assert roles == ["control-plane"] + ["worker"] * DEFAULTS["kind_cluster_workers"]
    allowed_node = {"role", "image", "extraPortMappings", "extraMounts", "labels", "kubeadmConfigPatches"}
    allowed_mapping = {"containerPort", "hostPort", "listenAddress", "protocol"}
    mappings = []
    for node in config["nodes"]:
        assert set(node) <= allowed_node
        for m in node.get("extraPortMappings", []):
            assert set(m) <= allowed_mapping and m["protocol"] == "TCP" and m["listenAddress"] == "127.0.0.1"
            assert m["hostPort"] == m["containerPort"]
            mappings.append(m["containerPort"])
    node_ports = [
        p["nodePort"]
        for s in render.get("Service")
        if s["spec"].get("type") == "NodePort"
        for p in s["spec"]["ports"]
    ]
    assert sorted(mappings) == sorted(node_ports) == [PORT_BASE + i for i in range(render.members)]
    assert all(30000 <= p <= 32767 for p in node_ports)


# --- the etcd members ------------------------------------------------------------------------------------


def test_statefulset_shape(render):
    sts = render.one("StatefulSet", ROLE_VARS["kind_cluster_statefulset"])
    spec = sts["spec"]
    assert spec["replicas"] == render.members and spec["podManagementPolicy"] == "Parallel"
    assert matches(spec["selector"], spec["template"]["metadata"]["labels"])
    assert [t["metadata"]["name"] for t in spec["volumeClaimTemplates"]] == ["data"]
    assert [p["name"] for p in etcd_pods(render)] == [m["name"] for m in render.plan["members"]]
    etcd = next(c for c in spec["template"]["spec"]["containers"] if c["name"] == "etcd")
    assert etcd["command"] == ["/usr/local/bin/etcd", "--config-file=/etc/etcd/etcd.yaml"]
    env = {e["name"]: e for e in etcd["env"]}
    assert env["LAB_MEMBER"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    anti = spec["template"]["spec"]["affinity"]["podAntiAffinity"]
    term = anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert matches(term["labelSelector"], spec["template"]["metadata"]["labels"])


def test_services_select_the_right_pods_and_ports(render):
    sts = render.one("StatefulSet", ROLE_VARS["kind_cluster_statefulset"])
    all_pods = pods(render) + [{**p, "spec": {"containers": []}} for p in SYSTEM_PODS]
    headless = render.one("Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    selected = [p["name"] for p in all_pods if matches(headless["spec"]["selector"], p["labels"])]
    assert selected == [m["name"] for m in render.plan["members"]]
    for member in render.plan["members"]:
        svc = render.one("Service", f"{member['name']}-client")
        assert svc["spec"]["type"] == "NodePort" and svc["spec"]["publishNotReadyAddresses"] is True
        chosen = [p for p in all_pods if matches(svc["spec"]["selector"], p["labels"])]
        assert [p["name"] for p in chosen] == [member["name"]]
        (port,) = svc["spec"]["ports"]
        assert port["nodePort"] == PORT_BASE + member["index"] and port["port"] == CLIENT_PORT
    for svc in render.get("Service"):
        for pod in (p for p in all_pods if matches(svc["spec"]["selector"], p["labels"])):
            etcd = next(c for c in pod["spec"]["containers"] if c["name"] == "etcd")
            for port in svc["spec"]["ports"]:
                assert resolve_port(etcd, port["targetPort"]) == port["port"], (svc["metadata"]["name"], port)


def test_probes_point_at_real_ports_and_never_kill_a_leaderless_member(render):
    # With TLS the client port wants a client certificate, which the kubelet has not: the probes use
    # etcd's plain-HTTP metrics port (kubeadm's 2381), which the init container's config opens.
    port = METRICS_PORT if render.tls else CLIENT_PORT
    for pod in etcd_pods(render):
        etcd = next(c for c in pod["spec"]["containers"] if c["name"] == "etcd")
        for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = etcd[probe_name]
            handler = probe.get("httpGet") or probe.get("tcpSocket")
            assert resolve_port(etcd, handler["port"]) == port, probe_name
        assert etcd["readinessProbe"]["httpGet"]["path"] == "/health"
        assert etcd["readinessProbe"]["httpGet"].get("scheme", "HTTP") == "HTTP"
        # /health fails without a leader: liveness on it would restart the isolated member in a loop.
        assert "httpGet" not in etcd["livenessProbe"] and "tcpSocket" in etcd["livenessProbe"]


def test_volume_mounts_configmaps_and_claims_exist(render):
    configmaps = {c["metadata"]["name"]: c for c in render.get("ConfigMap")}
    claims = {c["metadata"]["name"] for c in render.get("PersistentVolumeClaim")}
    sts = render.one("StatefulSet", ROLE_VARS["kind_cluster_statefulset"])
    claims |= {
        f"{t['metadata']['name']}-{p['name']}"
        for t in sts["spec"]["volumeClaimTemplates"]
        for p in etcd_pods(render)
    }
    for pod in pods(render):
        volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
        templates = {
            t["metadata"]["name"]
            for t in pod.get("owner", {}).get("spec", {}).get("volumeClaimTemplates", [])
        }
        for container in containers(pod["spec"]):
            mounts = {}
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes or mount["name"] in templates, (pod["name"], mount)
                mounts[mount["mountPath"]] = volumes.get(mount["name"], {})
            # Every script a container runs is a key of the ConfigMap mounted at its directory.
            for arg in container.get("command", []) + container.get("args", []):
                directory, _, filename = arg.rpartition("/")
                source = mounts.get(directory, {}).get("configMap")
                if arg.endswith(".py"):
                    assert source and filename in configmaps[source["name"]]["data"], (pod["name"], arg)
        for volume in volumes.values():
            if "configMap" in volume and not volume["configMap"].get("optional"):
                assert volume["configMap"]["name"] in configmaps, (pod["name"], volume)
            for source in secret_sources(volume):
                secret = render.one("Secret", source["secretName"])
                for item in source["items"]:
                    assert item["key"] in secret["data"], (pod["name"], source["secretName"], item)
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, (pod["name"], volume)


def test_configmaps_carry_the_project_scripts_unchanged(render):
    data = {
        k: v for c in render.get("ConfigMap") for k, v in (c.get("data") or {}).items() if k.endswith(".py")
    }
    sources = {
        "lab_writer.py": ROOT / "roles/lab_workload/files/lab_writer.py",
        "vdso_clock.py": ROOT / "module_utils/vdso_clock.py",
        **{p.name: p for p in (ROLE / "files").glob("*.py")},
    }
    assert set(data) == set(sources)
    for name, path in sources.items():
        assert data[name] == path.read_text(), f"{name} differs from {path}"


def secret_sources(volume: dict) -> list[dict]:
    """A Secret volume's or a projected volume's Secrets: secretName, items (mode resolved), as mounted."""
    if "secret" in volume:
        default = volume["secret"].get("defaultMode", 0o644)
        sources = [(volume["secret"]["secretName"], volume["secret"].get("items"))]
    elif "projected" in volume:
        default = volume["projected"].get("defaultMode", 0o644)
        sources = [(s["secret"]["name"], s["secret"].get("items")) for s in volume["projected"]["sources"]]
    else:
        return []
    out = []
    for name, items in sources:
        assert items, f"Secret {name} is mounted whole: name its keys and their modes"
        out.append({"secretName": name, "items": [{**i, "mode": i.get("mode", default)} for i in items]})
    return out


def materialize(render: Render, volume: dict, dest: Path) -> None:
    """Write a Secret or projected volume's files as the kubelet would: the items' paths and modes."""
    for source in secret_sources(volume):
        data = render.one("Secret", source["secretName"])["data"]
        for item in source["items"]:
            path = dest / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(base64.b64decode(data[item["key"]]))
            path.chmod(item["mode"])


def _config_runs(render: Render, tmp_path: Path, overrides: dict) -> dict[str, dict]:
    """Run the init container's command for every member, with its mounts on temporary dirs."""
    sts = render.one("StatefulSet", ROLE_VARS["kind_cluster_statefulset"])
    spec = sts["spec"]["template"]["spec"]
    init = next(c for c in spec["initContainers"] if c["name"] == "config")
    etcd = next(c for c in spec["containers"] if c["name"] == "etcd")
    scripts = render.one("ConfigMap", "etcd-scripts")["data"]
    module = load_script("lab_etcd_config", scripts["lab_etcd_config.py"], tmp_path)
    results = {}
    for member in render.plan["members"]:
        root = tmp_path / member["name"]
        mounts = {m["mountPath"]: root / m["name"] for m in init["volumeMounts"]}
        (mounts["/etc/etcd-overrides"]).mkdir(parents=True)
        volumes = {v["name"]: v for v in spec["volumes"]}
        for mount in init["volumeMounts"]:
            materialize(render, volumes[mount["name"]], mounts[mount["mountPath"]])
        for key, text in overrides.items():
            (mounts["/etc/etcd-overrides"] / key).write_text(text)
        argv = []
        for arg in init["command"][2:]:
            for path, local in mounts.items():
                arg = arg.replace(f"={path}/", f"={local}/").replace(f"={path}", f"={local}")
            argv.append(arg)
        os.environ["POD_NAME"] = member["name"]
        try:
            assert module.main(argv) == 0
        finally:
            del os.environ["POD_NAME"]
        # etcd reads the file the init container wrote, through the same volume.
        config_arg = etcd["command"][1].split("=", 1)[1]
        etcd_mount = next(m for m in etcd["volumeMounts"] if config_arg.startswith(m["mountPath"] + "/"))
        init_path = next(p for p, local in mounts.items() if local.name == etcd_mount["name"])
        written = mounts[init_path] / os.path.relpath(config_arg, etcd_mount["mountPath"])
        text = written.read_text()
        for path, local in mounts.items():  # back to the paths inside the pod
            text = text.replace(str(local), path)
        config = yaml.safe_load(text)
        # Every file the config names is read by etcd through one of its own mounts: resolved to the
        # init container's copy of that volume.
        etcd_mounts = {m["mountPath"]: m["name"] for m in etcd["volumeMounts"]}
        by_name = {m["name"]: local for m in init["volumeMounts"] for local in [mounts[m["mountPath"]]]}
        files = {}
        for block in ("client-transport-security", "peer-transport-security"):
            for key, value in (config.get(block) or {}).items():
                if key.endswith("-file"):
                    mount = next(m for m in etcd_mounts if value.startswith(m + "/"))
                    files[f"{block}.{key}"] = by_name[etcd_mounts[mount]] / os.path.relpath(value, mount)
        results[member["name"]] = {**config, "_files": files}
    return results


def test_init_container_gives_each_member_its_config(render, tmp_path, capsys):
    healthy = render.get("ConfigMap", "etcd-overrides")[0]["data"]
    assert healthy == {}
    configs = _config_runs(render, tmp_path, healthy)
    sts = render.one("StatefulSet", ROLE_VARS["kind_cluster_statefulset"])
    domain = f"{sts['spec']['serviceName']}.{NAMESPACE}.svc.cluster.local"
    cluster = ",".join(f"{m['name']}=http://{m['name']}.{domain}:{PEER_PORT}" for m in render.plan["members"])
    data_mount = next(
        m["mountPath"]
        for m in sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        if m["name"] == "data"
    )
    scheme = "https" if render.tls else "http"
    cluster = cluster.replace("=http://", f"={scheme}://")
    for name, config in configs.items():
        assert config["name"] == name
        assert config["initial-cluster"] == cluster
        assert config["initial-advertise-peer-urls"] == f"{scheme}://{name}.{domain}:{PEER_PORT}"
        assert config["advertise-client-urls"] == f"{scheme}://{name}.{domain}:{CLIENT_PORT}"
        assert config["listen-client-urls"] == f"{scheme}://0.0.0.0:{CLIENT_PORT}"
        assert config["listen-peer-urls"] == f"{scheme}://0.0.0.0:{PEER_PORT}"
        assert config["initial-cluster"] == ",".join(
            f"{m['name']}={m['peer_url']}" for m in render.plan["members"]
        )
        assert config["initial-cluster-state"] == "new" and config["force-new-cluster"] is False
        assert os.path.dirname(config["data-dir"]) == data_mount
    capsys.readouterr()


def test_the_override_reaches_only_the_forced_member(render, tmp_path, capsys):
    forced_map = render.get("ConfigMap", "etcd-overrides")[-1]["data"]
    assert set(forced_map) == {render.plan["forced"]}
    assert render.plan["forced"] in render.plan["isolated"]
    configs = _config_runs(render, tmp_path, forced_map)
    forced = {name for name, config in configs.items() if config["force-new-cluster"] is True}
    assert forced == {render.plan["forced"]}
    capsys.readouterr()


def test_a_held_member_waits_and_gets_no_config(render, tmp_path, capsys):
    scripts = render.one("ConfigMap", "etcd-scripts")["data"]
    module = load_script("lab_etcd_config_hold", scripts["lab_etcd_config.py"], tmp_path)
    overrides = tmp_path / "overrides"
    overrides.mkdir()
    (overrides / "etcd-1").write_text("lab-hold: true\ninitial-cluster-state: existing\n")
    common = [
        "--members=3",
        "--peer-domain=p.svc",
        "--token=t",
        "--data-dir=/d",
        f"--overrides-dir={overrides}",
    ]
    out = tmp_path / "etcd.yaml"
    rc = module.main([*common, "--name=etcd-1", f"--out={out}", "--poll=0.05", "--max-hold=0.2"])
    assert rc == 3 and not out.exists()
    assert module.main([*common, "--name=etcd-7", f"--out={out}"]) == 2
    (overrides / "etcd-1").write_text("initial-cluster-state: existing\n")
    assert module.main([*common, "--name=etcd-1", f"--out={out}"]) == 0
    assert yaml.safe_load(out.read_text())["initial-cluster-state"] == "existing"
    capsys.readouterr()


# --- mutual TLS ------------------------------------------------------------------------------------------


def _cert(b64: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(b64))


def _sans(cert: x509.Certificate) -> set[str]:
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(alt.get_values_for_type(x509.DNSName)) | {
        str(ip) for ip in alt.get_values_for_type(x509.IPAddress)
    }


def _eku(cert: x509.Certificate) -> set:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_the_secrets_hold_each_members_certificates_for_the_names_it_is_reached_by(render):
    secrets = {s["metadata"]["name"]: s for s in render.get("Secret")}
    if not render.tls:
        assert not secrets and not (render.dir / "15-etcd-pki.yaml").exists()
        return
    client_secret = ROLE_VARS["kind_cluster_client_secret"]
    names = [f"{m['name']}-{kind}" for m in render.plan["members"] for kind in ("server", "peer")]
    assert sorted(secrets) == sorted([*names, client_secret])
    ca = _cert(secrets[client_secret]["data"]["ca.crt"])
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    sts = render.one("StatefulSet", ROLE_VARS["kind_cluster_statefulset"])
    domain = f"{sts['spec']['serviceName']}.{NAMESPACE}"
    for secret in secrets.values():
        assert secret["type"] == "kubernetes.io/tls" and set(secret["data"]) == {
            "ca.crt",
            "tls.crt",
            "tls.key",
        }
        assert _cert(secret["data"]["ca.crt"]) == ca
        cert = _cert(secret["data"]["tls.crt"])
        key = serialization.load_pem_private_key(base64.b64decode(secret["data"]["tls.key"]), None)
        spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        assert key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)
        assert cert.issuer == ca.subject
        ca.public_key().verify(
            cert.signature,
            cert.tbs_certificate_bytes,
            ec.ECDSA(cert.signature_hash_algorithm),
        )
    for member in render.plan["members"]:
        name = member["name"]
        for kind in ("server", "peer"):
            cert = _cert(secrets[f"{name}-{kind}"]["data"]["tls.crt"])
            assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
            assert _eku(cert) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
            sans = _sans(cert)
            # The peers dial the peer URLs; the writers the client Service; the controller 127.0.0.1.
            assert member["peer_url"].split("//")[1].rsplit(":", 1)[0] in sans
            assert {f"{name}.{domain}.svc.cluster.local", f"{name}.{domain}.svc", f"{name}"} <= sans
            assert f"{name}-client.{NAMESPACE}.svc.cluster.local" in sans
            assert f"{ROLE_VARS['kind_cluster_statefulset']}-ready.{NAMESPACE}.svc.cluster.local" in sans
            if kind == "server":
                assert {"localhost", "127.0.0.1"} <= sans
            others = {m["name"] for m in render.plan["members"]} - {name}
            assert not any(s.split(".")[0].removesuffix("-client") in others for s in sans), sans
    client = _cert(secrets[client_secret]["data"]["tls.crt"])
    assert _eku(client) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    # The CA's key stays on the controller: no Secret holds it.
    ca_key = (render.dir / "pki" / "ca.key").read_bytes()
    assert all(base64.b64decode(v) != ca_key for sec in secrets.values() for v in sec["data"].values())


def test_private_keys_are_never_world_readable(render):
    manifest = render.dir / "15-etcd-pki.yaml"
    if render.tls:
        assert stat.S_IMODE(manifest.stat().st_mode) == 0o600
    mounted_keys = 0
    for pod in pods(render):
        for volume in pod["spec"].get("volumes", []):
            for source in secret_sources(volume):
                for item in source["items"]:
                    if item["key"] == "tls.key":
                        mounted_keys += 1
                        assert item["mode"] & 0o077 == 0, (pod["name"], source["secretName"], item)
                    assert item["mode"] & 0o022 == 0, (pod["name"], item)
            if volume["name"] == "pki" and "emptyDir" in volume:
                assert volume["emptyDir"]["medium"] == "Memory"  # the copied keys never touch the node's disk
    # Every etcd pod (its own server and peer keys, from all members' Secrets), every writer: a key each.
    writers = len(render.get("Deployment"))
    assert mounted_keys == (2 * render.members * render.members + writers if render.tls else 0)


def test_the_etcd_container_holds_only_its_own_certificates_and_etcdctl_finds_them(render, tmp_path, capsys):
    sts = render.one("StatefulSet", ROLE_VARS["kind_cluster_statefulset"])
    spec = sts["spec"]["template"]["spec"]
    etcd = next(c for c in spec["containers"] if c["name"] == "etcd")
    volumes = {v["name"]: v for v in spec["volumes"]}
    # The Secrets (every member's keys) reach the init container only.
    assert not any(secret_sources(volumes.get(m["name"], {})) for m in etcd["volumeMounts"])
    env = {e["name"]: e.get("value") for e in etcd["env"]}
    configs = _config_runs(render, tmp_path, {})
    if not render.tls:
        assert not any(k.startswith("ETCDCTL_") for k in env)
        for config in configs.values():
            assert "client-transport-security" not in config and "listen-metrics-urls" not in config
        capsys.readouterr()
        return
    assert env["ETCDCTL_CACERT"] == f"{PKI_MOUNT}/ca.crt"
    assert (
        env["ETCDCTL_CERT"] == f"{PKI_MOUNT}/server.crt" and env["ETCDCTL_KEY"] == f"{PKI_MOUNT}/server.key"
    )
    (pki_mount,) = [m for m in etcd["volumeMounts"] if m["mountPath"] == PKI_MOUNT]
    assert pki_mount["readOnly"] is True and "emptyDir" in volumes[pki_mount["name"]]
    for name, config in configs.items():
        assert config["listen-metrics-urls"] == f"http://0.0.0.0:{METRICS_PORT}"
        for block, prefix in (("client-transport-security", "server"), ("peer-transport-security", "peer")):
            settings = config[block]
            assert settings["client-cert-auth"] is True
            assert settings["trusted-ca-file"] == f"{PKI_MOUNT}/ca.crt"
            assert settings["cert-file"] == f"{PKI_MOUNT}/{prefix}.crt"
            assert settings["key-file"] == f"{PKI_MOUNT}/{prefix}.key"
            cert_file = config["_files"][f"{block}.cert-file"]
            key_file = config["_files"][f"{block}.key-file"]
            cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
            # The member's own certificate, copied by the init container; its key readable by etcd only.
            assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
            assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
            assert stat.S_IMODE(cert_file.stat().st_mode) == 0o644
            assert sorted(p.name for p in cert_file.parent.iterdir()) == [
                "ca.crt",
                "peer.crt",
                "peer.key",
                "server.crt",
                "server.key",
            ]
    capsys.readouterr()


def test_a_member_without_its_secret_gets_no_config(render, tmp_path, capsys):
    if not render.tls:
        return
    scripts = render.one("ConfigMap", "etcd-scripts")["data"]
    module = load_script("lab_etcd_config_tls", scripts["lab_etcd_config.py"], tmp_path)
    (tmp_path / "overrides").mkdir()
    (tmp_path / "from" / "etcd-0").mkdir(parents=True)
    out = tmp_path / "etcd.yaml"
    argv = [
        "--members=3", "--peer-domain=p.svc", "--token=t", "--data-dir=/d", "--name=etcd-1",
        f"--overrides-dir={tmp_path / 'overrides'}", f"--out={out}",
        f"--tls-from={tmp_path / 'from'}", f"--tls-dir={tmp_path / 'pki'}",
    ]  # fmt: skip
    assert module.main(argv) == 2 and not out.exists()
    assert "etcd-1/ca.crt" in capsys.readouterr().err


def test_the_writers_and_the_fault_reach_the_members_with_the_client_certificate(render):
    if not render.tls:
        return
    for dep in render.get("Deployment"):
        spec = dep["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        env = {e["name"]: e["value"] for e in container["env"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        files = {}
        for mount in container["volumeMounts"]:
            for source in secret_sources(volumes[mount["name"]]):
                for item in source["items"]:
                    files[f"{mount['mountPath']}/{item['path']}"] = (source["secretName"], item["key"])
        client = ROLE_VARS["kind_cluster_client_secret"]
        assert files[env["ETCDCTL_CACERT"]] == (client, "ca.crt")
        assert files[env["ETCDCTL_CERT"]] == (client, "tls.crt")
        assert files[env["ETCDCTL_KEY"]] == (client, "tls.key")


# --- the partition ---------------------------------------------------------------------------------------


def _peer_matches(peer: dict, policy_ns: str, pod: dict) -> bool:
    if "ipBlock" in peer:
        return False
    ns_ok = (
        matches(peer["namespaceSelector"], {"kubernetes.io/metadata.name": NAMESPACE})
        if ("namespaceSelector" in peer)
        else policy_ns == NAMESPACE
    )
    pod_ok = matches(peer["podSelector"], pod["labels"]) if "podSelector" in peer else True
    return ns_ok and pod_ok


def _port_matches(rule: dict, port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    return not ports or any(p.get("port") == port and p.get("protocol", "TCP") == protocol for p in ports)


def allowed(policies: list[dict], src: dict, dst: dict, port: int, protocol: str = "TCP") -> bool:
    """NetworkPolicy semantics: traffic passes when the source's egress and the target's ingress allow it."""

    def side(direction: str, pod: dict, other: dict) -> bool:
        kind, peers_key = ("Egress", "to") if direction == "egress" else ("Ingress", "from")
        selecting = [
            p
            for p in policies
            if kind in p["spec"]["policyTypes"] and matches(p["spec"]["podSelector"], pod["labels"])
        ]
        if not selecting:
            return True
        return any(
            _port_matches(rule, port, protocol)
            and (
                peers_key not in rule
                or any(_peer_matches(peer, p["metadata"]["namespace"], other) for peer in rule[peers_key])
            )
            for p in selecting
            for rule in p["spec"].get(direction, [])
        )

    return side("egress", src, dst) and side("ingress", dst, src)


def test_network_policies_select_each_side_exactly(render):
    policies = render.get("NetworkPolicy")
    everyone = pods(render) + SYSTEM_PODS
    by_name = {p["metadata"]["name"]: p for p in policies}
    assert set(by_name) == {"etcd-partition-isolated", "etcd-partition-majority"}
    for name, side in (("etcd-partition-isolated", "isolated"), ("etcd-partition-majority", "majority")):
        chosen = [p["name"] for p in everyone if matches(by_name[name]["spec"]["podSelector"], p["labels"])]
        assert chosen == render.plan[side], name
        assert by_name[name]["spec"]["policyTypes"] == ["Ingress", "Egress"]
        ports = {
            (p.get("protocol", "TCP"), p["port"])
            for direction in ("ingress", "egress")
            for rule in by_name[name]["spec"][direction]
            for p in rule["ports"]
        }
        wanted = {("TCP", CLIENT_PORT), ("TCP", PEER_PORT), ("UDP", 53), ("TCP", 53)}
        assert ports == wanted | ({("TCP", METRICS_PORT)} if render.tls else set())


def test_partition_cuts_only_the_peer_port_across_sides(render):
    policies = render.get("NetworkPolicy")
    members = {p["name"]: p for p in etcd_pods(render)}
    isolated = set(render.plan["isolated"])
    for a in members.values():
        for b in members.values():
            if a is b:
                continue
            same_side = (a["name"] in isolated) == (b["name"] in isolated)
            assert allowed(policies, a, b, PEER_PORT) is same_side, (a["name"], b["name"])
            assert allowed(policies, a, b, CLIENT_PORT), (a["name"], b["name"])
    writers = [p for p in pods(render) if p.get("owner", {}).get("kind") == "Deployment"]
    dns = next(p for p in SYSTEM_PODS if p["name"].startswith("coredns"))
    for member in members.values():
        assert all(allowed(policies, w, member, CLIENT_PORT) for w in writers)
        if render.tls:  # the kubelet's probes, whatever side
            assert all(allowed(policies, w, member, METRICS_PORT) for w in writers)
        assert allowed(policies, member, dns, 53, "UDP") and allowed(policies, member, dns, 53, "TCP")
        assert not allowed(policies, member, dns, PEER_PORT)


# --- writers, clock skew, recovery ----------------------------------------------------------------------


def test_one_writer_per_member_pinned_to_its_client_service(render):
    deployments = render.get("Deployment")
    assert len(deployments) == render.members
    for member in render.plan["members"]:
        dep = render.one("Deployment", f"lab-writer-{member['name']}")
        assert matches(dep["spec"]["selector"], dep["spec"]["template"]["metadata"]["labels"])
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e["value"] for e in container["env"]}
        svc = render.one("Service", f"{member['name']}-client")
        scheme = "https" if render.tls else "http"
        assert env["LAB_WRITER_ENDPOINT"] == (
            f"{scheme}://{svc['metadata']['name']}.{NAMESPACE}.svc.cluster.local:{svc['spec']['ports'][0]['port']}"
        )
        tls_env = {k: v for k, v in env.items() if k.startswith("ETCDCTL_")}
        assert set(tls_env) == ({"ETCDCTL_CACERT", "ETCDCTL_CERT", "ETCDCTL_KEY"} if render.tls else set())
        assert env["LAB_WRITER_NAME"] == member["name"]
        command = container["command"]
        assert "--endpoint=$(LAB_WRITER_ENDPOINT)" in command and "--name=$(LAB_WRITER_NAME)" in command
        ledger = next(a for a in command if a.startswith("--ledger="))
        mount = next(m for m in container["volumeMounts"] if m["name"] == "ledger")
        assert ledger.split("=", 1)[1].startswith(mount["mountPath"] + "/")
        # The writer's own argument parser accepts the command line.
        writer = ROOT / "roles/lab_workload/files/lab_writer.py"
        args = [
            a.replace("$(LAB_WRITER_ENDPOINT)", env["LAB_WRITER_ENDPOINT"]).replace(
                "$(LAB_WRITER_NAME)", env["LAB_WRITER_NAME"]
            )
            for a in command[2:]
        ]
        check = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import sys; sys.path.insert(0, {str(writer.parent)!r}); import lab_writer; "
                f"lab_writer.parse_args({args!r})",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, check.stderr


def test_each_ledger_reader_mounts_its_writers_ledger_read_only(render):
    """The readers that copy a stopped writer's ledger out: the same claim, the path the writer writes."""
    for member in render.plan["members"]:
        name = member["name"]
        reader = render.one("Pod", f"lab-ledger-reader-{name}")
        writer = render.one("Deployment", f"lab-writer-{name}")["spec"]["template"]["spec"]
        claim = {v["name"]: v["persistentVolumeClaim"] for v in reader["spec"]["volumes"]}["ledger"]
        assert claim == {"claimName": f"lab-ledger-{name}", "readOnly": True}
        assert {v["name"]: v.get("persistentVolumeClaim") for v in writer["volumes"]}["ledger"][
            "claimName"
        ] == (claim["claimName"])
        (container,) = reader["spec"]["containers"]
        (mount,) = container["volumeMounts"]
        assert mount["readOnly"] is True
        ledger = next(a for a in writer["containers"][0]["command"] if a.startswith("--ledger="))
        # ledger_kind.yml reads /ledger/<member>.jsonl in the writer or the reader pod.
        assert ledger == f"--ledger={mount['mountPath']}/{name}.jsonl" == f"--ledger=/ledger/{name}.jsonl"
        assert reader["spec"]["restartPolicy"] == "Never"
        assert not matches(
            render.one("Service", f"{name}-client")["spec"]["selector"], reader["metadata"]["labels"]
        )


def test_clock_skew_pod_targets_the_skewed_members_etcd(render, tmp_path):
    pod = render.one("Pod", "lab-clock-skew")
    target = render.plan["majority"][0]
    spec = pod["spec"]
    assert spec["hostPID"] is True
    (container,) = spec["containers"]
    assert container["securityContext"]["privileged"] is True
    assert f"--member={target}" in container["command"]
    term = spec["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert [p["name"] for p in pods(render) + SYSTEM_PODS if matches(term["labelSelector"], p["labels"])] == [
        target
    ]
    data = render.one("ConfigMap", "lab-clock-skew")["data"]
    (tmp_path / "vdso_clock.py").write_text(data["vdso_clock.py"])
    module = load_script("lab_clock_skew_pod", data["lab_clock_skew_pod.py"], tmp_path)
    proc = tmp_path / "proc"
    for pid, comm, environ in [
        (101, "etcd", b"HOSTNAME=sblab-control-plane\0"),  # the cluster's own etcd
        (202, "etcd", b"HOSTNAME=x\0LAB_MEMBER=" + target.encode() + b"\0"),
        (303, "python3", b"LAB_MEMBER=" + target.encode() + b"\0"),
        (404, "etcd", b"LAB_MEMBER=" + target.encode() + b"0\0"),
    ]:
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "comm").write_text(comm + "\n")
        (proc / str(pid) / "environ").write_bytes(environ)
    assert module.find_pid(target, str(proc)) == 202
    assert module.find_pid("etcd-9", str(proc)) is None


def test_move_aside_job_moves_the_forced_members_data_and_never_deletes(render, tmp_path, capsys):
    job = render.one("Job", f"lab-move-aside-{render.plan['forced']}")
    spec = job["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mount = next(m for m in container["volumeMounts"] if volumes[m["name"]].get("persistentVolumeClaim"))
    assert volumes[mount["name"]]["persistentVolumeClaim"]["claimName"] == f"data-{render.plan['forced']}"
    assert f"--volume={mount['mountPath']}" in container["command"] and "--name=data" in container["command"]
    text = shlex.join(container["command"])
    assert " rm " not in f" {text} "
    module = load_script(
        "lab_move_aside", render.one("ConfigMap", "lab-move-aside")["data"]["lab_move_aside.py"], tmp_path
    )
    volume = tmp_path / "volume"
    wal = volume / "data" / "member" / "wal"
    wal.mkdir(parents=True)
    (wal / "0000000000000000-0000000000000000.wal").write_text("entries")
    # A running etcd holds its WAL locked: the Job refuses and leaves everything in place.
    with open(wal / "0000000000000000-0000000000000000.wal", "rb") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        assert module.main([f"--volume={volume}", "--name=data"]) == 1
    assert (wal / "0000000000000000-0000000000000000.wal").exists()
    assert module.main([f"--volume={volume}", "--name=data"]) == 0
    (aside,) = volume.glob("data.aside-*")
    assert re.fullmatch(r"data\.aside-\d{8}T\d{6}Z", aside.name)
    assert (aside / "member" / "wal" / "0000000000000000-0000000000000000.wal").read_text() == "entries"
    assert not (volume / "data").exists()
    assert module.main([f"--volume={volume}", "--name=data"]) == 0  # nothing left to move: still fine
    assert len(list(volume.glob("data.aside-*"))) == 1
    capsys.readouterr()


# --- running twice ---------------------------------------------------------------------------------------


def test_a_second_render_changes_nothing(runs):
    rc, _stdout, out_dir = runs[VARIANTS[0]]
    assert rc == 0
    proc = _playbook("-e", f"lab_render_dir={out_dir}", "-e", f"lab_members={VARIANTS[0][0]}")
    again, _ = proc.communicate(timeout=170)
    assert proc.returncode == 0, again[-2000:]
    recap = re.search(r"localhost\s+:\s+ok=\d+\s+changed=(\d+)", again)
    assert recap and recap.group(1) == "0", again[-2000:]


# --- bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", list(BAD_INPUT))
def test_bad_input_fails_with_one_clear_line(runs, label):
    rc, stdout, out_dir = runs[label]
    assert rc != 0, stdout[-2000:]
    assert BAD_INPUT[label][1] in stdout, stdout[-2000:]
    assert "Traceback" not in stdout
    assert not out_dir.exists() or not any(out_dir.iterdir())
