#!/usr/bin/python
"""Ansible module lab_pki: the lab's certificate authority and its etcd certificates, in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lab_pki
short_description: Make the lab's CA and every member's server and peer certificates, kubeadm's way
description:
  - Makes, under O(path), a certificate authority and, for every member, a server certificate and a peer
    certificate with the member's name and IP address in the subject alternative names, plus a client
    certificate per name in O(clients). The layout and key usages follow kubeadm's etcd certificates
    (C(etcd/ca), C(etcd/server), C(etcd/peer), C(apiserver-etcd-client)) - the server and peer certificates
    carry both server and client authentication, a client certificate only client authentication.
  - Keys are ECDSA P-256 (kubeadm's C(ECDSA-P256)), written with mode 0600; certificates 0644.
  - Idempotent - a certificate is kept when it is signed by the CA, holds the wanted names and key usages,
    matches its key and stays valid for more than a day; otherwise it is made again. A new CA makes every
    certificate again.
  - With O(state=absent), removes O(path).
  - Uses the C(cryptography) library (the one ansible-core itself needs), no openssl command.
version_added: "1.0.0"
options:
  path:
    description: Directory of the PKI (C(.lab/pki)).
    type: path
    required: true
  members:
    description: The members, each with its C(name), C(ip) (may be empty) and optional C(dns), a list of more
      DNS names (the kind platform's pod names).
    type: list
    elements: dict
    default: []
  clients:
    description: Names of the client certificates (the writers, the modules, C(./lab exec)).
    type: list
    elements: str
    default: [lab-client]
  validity_days:
    description: Days a new certificate is valid.
    type: int
    default: 30
  state:
    description: C(present) makes what is missing or wrong; C(absent) removes O(path).
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - lab_module
"""

EXAMPLES = r"""
- name: PKI | Make the lab's CA and the members' certificates
  lab_pki:
    path: "{{ lab_state_dir }}/pki"
    members: "{{ lab_plan.members }}"
  register: lab_pki_result
"""

RETURN = r"""
ca_file:
  description: The CA certificate (for C(--trusted-ca-file), C(--peer-trusted-ca-file), C(--cacert)).
  returned: state=present
  type: str
  sample: /root/lab/.lab/pki/ca.crt
members:
  description: Per member, the paths of its C(server_cert), C(server_key), C(peer_cert) and C(peer_key).
  returned: state=present
  type: dict
  sample: {etcd-0: {server_cert: /root/lab/.lab/pki/etcd-0/server.crt}}
clients:
  description: Per client name, the paths of its C(cert) and C(key).
  returned: state=present
  type: dict
  sample: {lab-client: {cert: /root/lab/.lab/pki/clients/lab-client.crt}}
made:
  description: The certificates made (or made again) by this run, as paths relative to O(path).
  returned: always
  type: list
  elements: str
  sample: [ca.crt, etcd-0/server.crt]
"""

import os
import shutil

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.lab_pki_core import HAS_CRYPTOGRAPHY, check_members, ensure
from ansible.module_utils.lab_pki_layout import LAB_CLIENT, paths


def run_module() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "members": {"type": "list", "elements": "dict", "default": []},
            "clients": {"type": "list", "elements": "str", "default": [LAB_CLIENT]},
            "validity_days": {"type": "int", "default": 30},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        },
        supports_check_mode=True,
    )
    if not HAS_CRYPTOGRAPHY:
        module.fail_json(msg="lab_pki needs the Python library cryptography (pip install cryptography)")
    p = module.params
    if p["state"] == "absent":
        exists = os.path.exists(p["path"])
        if exists and not module.check_mode:
            shutil.rmtree(p["path"])
        module.exit_json(changed=exists, made=[])
    problem = check_members(p["members"])
    if problem:
        module.fail_json(msg=problem)
    if p["validity_days"] < 2:
        module.fail_json(msg=f"validity_days={p['validity_days']}: give at least 2")
    try:
        made = ensure(p["path"], p["members"], p["clients"], p["validity_days"], module.check_mode)
    except OSError as exc:
        module.fail_json(msg=f"cannot write the PKI under {p['path']}: {exc.strerror} ({exc.filename})")
    module.exit_json(
        changed=bool(made), made=made, **paths(p["path"], [m["name"] for m in p["members"]], p["clients"])
    )


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
