"""module_utils/etcd_client.py and the code it shares (etcd_codec, etcd_tls, etcd_diagnosis): URL validation,
ids, clock offset, encodings, TLS files, error mapping, the gRPC messages."""

from __future__ import annotations

import base64
import datetime
import email.utils

import pytest
from ansible.module_utils import etcd_client as ec
from ansible.module_utils import etcd_codec, etcd_diagnosis, etcd_tls, lab_pki_core
from ansible.module_utils.etcd_errors import EtcdError

GOOD_URLS = [
    ("http://127.0.0.1:2379", ("http", "127.0.0.1", 2379)),
    ("https://etcd-0.example:2379/", ("https", "etcd-0.example", 2379)),
    ("http://[::1]:2379", ("http", "::1", 2379)),
    ("  http://127.0.0.1:2379  ", ("http", "127.0.0.1", 2379)),
]


@pytest.mark.parametrize(("url", "expected"), GOOD_URLS)
def test_validate_endpoint_accepts(url, expected):
    assert ec.validate_endpoint(url) == expected


BAD_URLS = [
    ("", "is not a URL"),
    (None, "is not a URL"),
    ("127.0.0.1:2379", "has no scheme"),
    ("etcd-0", "has no scheme"),
    ("unix:///run/etcd.sock", "has scheme 'unix'"),
    ("grpc://127.0.0.1:2379", "has scheme 'grpc'"),
    ("http://127.0.0.1", "has no port"),
    ("http://127.0.0.1:0", "has port 0"),
    ("http://127.0.0.1:70000", "not a valid URL"),
    ("http://127.0.0.1:abc", "not a valid URL"),
    ("http:///x", "has no host"),
    ("http://127.0.0.1:2379/v3/kv/range", "without a path"),
    ("http://127.0.0.1:2379?x=1", "without a path"),
]


@pytest.mark.parametrize(("url", "message"), BAD_URLS)
def test_validate_endpoint_rejects(url, message):
    with pytest.raises(EtcdError) as err:
        ec.validate_endpoint(url)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10276657743932975437", "8e9e05c52164694d"),  # etcd's default single-member id
        (185828541645115251, "2943212f5e2cf73"),
        ("0", None),
        (None, None),
        ("", None),
    ],
)
def test_id_to_hex_matches_etcdctl(value, expected):
    assert etcd_codec.id_to_hex(value) == expected


@pytest.mark.parametrize("text", ["8e9e05c52164694d", "0x8E9E05C52164694D", " 8e9e05c52164694d "])
def test_hex_to_id(text):
    assert etcd_codec.hex_to_id(text) == 10276657743932975437


@pytest.mark.parametrize("text", ["zz", "0", "1" * 17])
def test_hex_to_id_rejects(text):
    with pytest.raises(EtcdError):
        etcd_codec.hex_to_id(text)


@pytest.mark.parametrize(
    ("prefix", "end"),
    [(b"/app/", b"/app0"), (b"a", b"b"), (b"a\xff", b"b"), (b"\xff\xff", b"\x00")],
)
def test_prefix_range_end_like_etcdctl(prefix, end):
    assert etcd_codec.prefix_range_end(prefix) == end


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"hello", ("hello", False)),
        ("é".encode(), ("é", False)),
        (b"\xff\x00", ("/wA=", True)),
        (b"", ("", False)),
    ],
)
def test_decode_value(data, expected):
    assert etcd_codec.decode_value(data) == expected


def test_b64_roundtrip():
    assert etcd_codec.unb64(etcd_codec.b64("/app/k1")) == b"/app/k1"
    assert etcd_codec.b64(b"\x00") == base64.b64encode(b"\x00").decode()


@pytest.mark.parametrize(
    ("server_offset", "sent", "rtt", "low", "high"),
    [
        (0.0, 1_700_000_000.2, 0.01, -0.6, 0.6),
        (90.0, 1_700_000_000.7, 0.02, 89.4, 90.6),
        (-30.0, 1_700_000_000.99, 0.2, -30.7, -29.3),
    ],
)
def test_clock_offset_from_date_within_resolution(server_offset, sent, rtt, low, high):
    server_time = sent + rtt / 2 + server_offset
    header = email.utils.formatdate(int(server_time), usegmt=True)  # Date truncates to the second
    offset = ec.clock_offset_from_date(header, sent, sent + rtt)
    assert low <= offset <= high


@pytest.mark.parametrize("header", [None, "", "not a date"])
def test_clock_offset_without_date(header):
    assert ec.clock_offset_from_date(header, 1.0, 2.0) is None


def test_parse_member_unstarted_and_learner():
    unstarted = etcd_codec.parse_member(
        {"ID": "15146193272069534389", "peerURLs": ["http://127.0.0.1:23809"], "isLearner": True}
    )
    assert unstarted == {
        "id": "d2321688711db2b5",
        "name": "",
        "peer_urls": ["http://127.0.0.1:23809"],
        "client_urls": [],
        "is_learner": True,
        "started": False,
    }


@pytest.mark.parametrize(("voters", "q"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)])
def test_quorum(voters, q):
    assert etcd_diagnosis.quorum(voters) == q


def test_tls_file_checks(tmp_path):
    with pytest.raises(EtcdError, match="CA file '/nope' does not exist"):
        etcd_tls.make_ssl_context(ca_file="/nope")
    bad_ca = tmp_path / "ca.pem"
    bad_ca.write_text("not a certificate")
    with pytest.raises(EtcdError, match="not a valid PEM certificate"):
        etcd_tls.make_ssl_context(ca_file=str(bad_ca))


def test_error_reply_mapping():
    client = ec.EtcdClient("http://127.0.0.1:1")
    err = client._error_from_reply(
        "/v3/kv/range",
        503,
        "application/json",
        b'{"error":"etcdserver: no leader","code":14,"message":"etcdserver: no leader"}',
    )
    assert err.kind == "etcd" and "etcdserver: no leader" in str(err) and "http://127.0.0.1:1" in str(err)
    err = client._error_from_reply(
        "/v3/maintenance/status", 501, "text/html", b"<html><body>Unsupported method</body></html>"
    )
    assert err.kind == "not_etcd" and "is not an etcd v3 gateway" in str(err) and "HTTP 501" in str(err)
    err = client._error_from_reply(
        "/v3/x", 400, "text/plain", b"Client sent an HTTP request to an HTTPS server.\n"
    )
    assert err.kind == "tls" and "use an https:// URL" in str(err)


def test_common_argument_spec_shape():
    spec = ec.ETCD_COMMON_ARGUMENT_SPEC
    assert set(spec) == {"timeout", "ca_cert", "client_cert", "client_key", "validate_certs"}
    assert [spec[o]["aliases"] for o in ("ca_cert", "client_cert", "client_key")] == [
        ["ca_file"],
        ["cert_file"],
        ["key_file"],
    ]
    assert ec.ETCD_COMMON_REQUIRED_TOGETHER == [("client_cert", "client_key")]
    assert spec["validate_certs"]["default"] is True
    assert spec["timeout"]["type"] == "float"


def test_tail_hash_writer_checks_the_trailing_sha256():
    import hashlib
    import io

    from ansible.module_utils.etcd_grpc import TailHashWriter

    db = bytes(range(256)) * 100
    for chunks in (
        [db + hashlib.sha256(db).digest()],
        [db[:1000], db[1000:] + hashlib.sha256(db).digest()[:5], hashlib.sha256(db).digest()[5:]],
    ):
        for threaded in (True, False):
            for batch in (1, 1500, 1 << 20):  # every chunk alone, several joined, all in finish()
                out = io.BytesIO()
                w = TailHashWriter(out, threaded, batch)
                for c in chunks:
                    w.write(c)
                assert w.intact() and out.getvalue() == db + hashlib.sha256(db).digest(), (threaded, batch)
    w = TailHashWriter(io.BytesIO())
    w.write(db[:-1] + hashlib.sha256(db).digest())
    assert not w.intact()


def test_tail_hash_writer_raises_the_writers_error():
    """A full disk in the writer thread is raised in the caller, by finish() at the latest."""
    from ansible.module_utils.etcd_grpc import TailHashWriter

    class Full:
        def write(self, data):
            raise OSError(28, "No space left on device")

    w = TailHashWriter(Full(), batch=10)
    w.write(b"x" * 20)
    with pytest.raises(OSError, match="No space left"):
        w.finish()


# The stubs' messages against etcd's wire format: the bytes below are etcd's field numbers and wire types
# (api/etcdserverpb/rpc.proto, api/mvccpb/kv.proto), written out by hand.


def test_range_request_encodes_as_etcd_expects():
    from ansible.module_utils.etcd_rpc_pb2 import RangeRequest

    req = RangeRequest(key=b"/a", range_end=b"/b", limit=300, revision=7, serializable=True)
    assert req.SerializeToString() == b"\x0a\x02/a\x12\x02/b\x18\xac\x02\x20\x07\x38\x01"


def test_range_response_decodes_to_the_modules_kv_dicts():
    from ansible.module_utils.etcd_rpc_pb2 import RangeResponse

    kv1 = b"\x0a\x02/a" + b"\x10\x05\x18\x09\x20\x02" + b"\x2a\x03v\xff1" + b"\x30\x87\x01"  # lease 135
    kv2 = b"\x0a\x03/ab" + b"\x10\x06\x18\x06\x20\x01"  # empty value: field omitted
    header = b"\x08\x01\x10\x02\x18\x2a\x20\x03"  # cluster 1, member 2, revision 42, term 3
    msg = b"\x0a" + bytes([len(header)]) + header
    msg += b"\x12" + bytes([len(kv1)]) + kv1 + b"\x12" + bytes([len(kv2)]) + kv2 + b"\x18\x01\x20\x05"
    reply = RangeResponse.FromString(msg)
    assert reply.header.revision == 42 and reply.more is True and reply.count == 5
    assert [kv.key for kv in reply.kvs] == [b"/a", b"/ab"]
    assert etcd_codec.parse_kv(reply.kvs[0]) == {
        "key": b"/a",
        "value": b"v\xff1",
        "create_revision": 5,
        "mod_revision": 9,
        "version": 2,
        "lease": 135,
    }
    assert etcd_codec.parse_kv(reply.kvs[1])["value"] == b""
    assert etcd_codec.kv_value(reply.kvs[0]) == b"v\xff1" and etcd_codec.kv_value(reply.kvs[1]) == b""
    gateway = {"key": "L2E=", "value": "dv8x", "create_revision": "5", "mod_revision": "9", "version": "2"}
    gateway["lease"] = "135"
    assert etcd_codec.parse_kv(gateway) == etcd_codec.parse_kv(reply.kvs[0])


def test_hashkv_and_snapshot_responses_decode():
    from ansible.module_utils.etcd_rpc_pb2 import HashKVResponse, SnapshotResponse

    # HashKVResponse{header: {member_id: 2, revision: 42}, hash: 300, compact_revision: -1}
    never = b"\x18" + b"\xff" * 9 + b"\x01"  # int64 -1 is a ten-byte varint
    reply = HashKVResponse.FromString(b"\x0a\x04\x10\x02\x18\x2a" + b"\x10\xac\x02" + never)
    assert (reply.header.member_id, reply.header.revision, reply.hash) == (2, 42, 300)
    assert reply.compact_revision == -1
    # SnapshotResponse{header: {...}, remaining_bytes: 300, blob: b"abc"}
    assert SnapshotResponse.FromString(b"\x0a\x02\x08\x01" + b"\x10\xac\x02" + b"\x1a\x03abc").blob == b"abc"


def test_grpc_refuses_to_skip_certificate_verification():
    """grpcio cannot skip verification: validate_certs=false on an https endpoint is a clear error, raised
    before any connection (the snapshot and the diff then take the gateway, see EtcdClient.snapshot)."""
    client = ec.EtcdClient("https://127.0.0.1:1", validate_certs=False)
    with pytest.raises(EtcdError, match=r"gRPC to https://127.0.0.1:1 with validate_certs=false") as err:
        client.grpc()
    assert err.value.kind == "tls"


def _self_signed(tmp_path, name, not_before, not_after):
    """A certificate of the lab's PKI signed by its own key, valid from now + not_before to now + not_after;
    the paths of its certificate and key files."""
    now = lab_pki_core.now()
    cert, key = lab_pki_core.make_self_signed(name, now + not_before, now + not_after)
    cert_path, key_path = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_path.write_bytes(lab_pki_core.pem(cert))
    key_path.write_bytes(lab_pki_core.key_pem(key))
    return str(cert_path), str(key_path)


def test_an_expired_or_future_certificate_is_named_in_one_line(tmp_path):
    day = datetime.timedelta(days=1)
    expired, expired_key = _self_signed(tmp_path, "old", -3 * day, -day)
    future, _ = _self_signed(tmp_path, "new", day, 3 * day)
    good, good_key = _self_signed(tmp_path, "good", -day, day)
    with pytest.raises(EtcdError, match=rf"The client certificate '{expired}' expired on \d{{4}}-"):
        etcd_tls.make_ssl_context(good, expired, expired_key)
    with pytest.raises(EtcdError, match=rf"The CA file '{expired}' expired on"):
        etcd_tls.make_ssl_context(expired)
    with pytest.raises(EtcdError, match=rf"The CA file '{future}' is not valid before .* clock right"):
        etcd_tls.make_ssl_context(future)
    assert etcd_tls.make_ssl_context(good, good, good_key) is not None


def test_a_certificate_file_that_is_not_pem_is_named(tmp_path):
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("not a certificate\n")
    with pytest.raises(EtcdError, match=f"The CA file '{garbage}' is not a valid PEM certificate"):
        etcd_tls.make_ssl_context(str(garbage))
    day = datetime.timedelta(days=1)
    good, good_key = _self_signed(tmp_path, "good", -day, day)
    with pytest.raises(EtcdError, match=f"Cannot load client certificate '{garbage}'"):
        etcd_tls.make_ssl_context(good, str(garbage), good_key)


def test_one_url_normaliser_for_the_client_and_the_modules():
    import etcd_endpoint_status
    import etcd_kv_diff

    assert ec.normalize_url(" HTTP://127.0.0.1:2379/ ") == "http://127.0.0.1:2379"
    assert ec.EtcdClient(" HTTP://127.0.0.1:2379/ ").endpoint == "http://127.0.0.1:2379"
    given = ["http://127.0.0.1:2379/", "HTTP://127.0.0.1:2379", "http://127.0.0.2:2379"]
    params = {"endpoints": given, "timeout": 1.0, "clock_skew_threshold": 1.0}
    assert etcd_endpoint_status.check_params(params) == ["http://127.0.0.1:2379", "http://127.0.0.2:2379"]
    diff = {"endpoints": given[1:], "page_size": 10, "max_items": 1, "report_path": None}
    assert etcd_kv_diff.check_params(diff) == ["http://127.0.0.1:2379", "http://127.0.0.2:2379"]
