"""Documentation of the connection options shared by the etcd_* modules (endpoints' TLS and timeouts).

The argument spec of these options is module_utils/etcd_client.py's ETCD_COMMON_ARGUMENT_SPEC; modules pull
this text in with `extends_documentation_fragment: [etcd_connection]` (ansible.cfg: doc_fragment_plugins).
"""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  timeout:
    description:
      - Seconds to wait for each request to an endpoint. Through the JSON gateway, the connection and each
        read; over gRPC, each call, but a snapshot stream, which may last longer, only the member's answer to
        a keepalive ping (one every 10 s).
    type: float
    default: 5.0
  ca_cert:
    description:
      - PEM file of the CA that signed the members' server certificates (https endpoints).
      - When omitted, the environment variable E(ETCDCTL_CACERT) (etcdctl's own) is used, else the system
        trust store.
    type: path
    aliases: [ca_file]
  client_cert:
    description:
      - PEM client certificate, for members started with C(--client-cert-auth).
      - Requires O(client_key). When omitted, the environment variable E(ETCDCTL_CERT) is used.
    type: path
    aliases: [cert_file]
  client_key:
    description:
      - PEM private key of O(client_cert). When omitted, the environment variable E(ETCDCTL_KEY) is used.
    type: path
    aliases: [key_file]
  validate_certs:
    description:
      - Verify the members' server certificates and host names. Turn off only in a lab.
      - Honoured by the JSON gateway only, because gRPC (HashKV, the snapshot and the diff's ranges) always
        verifies. With C(false) on an https endpoint, HashKV fails saying so, and a snapshot or diff with
        C(transport=auto) goes through the gateway.
    type: bool
    default: true
"""
