"""lab_tls_check against a real etcd on loopback: mutual TLS on its client port (--client-cert-auth), and a
plain one that must fail every refusal check."""

from __future__ import annotations

import lab_tls_check
import pytest
from etcd_fixtures import running_cluster, tls_files  # noqa: F401 - fixture


@pytest.fixture(scope="module")
def tls_cluster(tls_files):  # noqa: F811
    with running_cluster("3.5", size=1, tls=tls_files) as cluster:
        yield cluster


def params(urls, files):
    return {"urls": urls, **files.options(), "timeout": 3.0}


def test_a_member_with_client_cert_auth_passes_every_check(tls_cluster, tls_files):  # noqa: F811
    result = lab_tls_check.run(params(tls_cluster.endpoints, tls_files))
    assert result["ok"], result["checks"]
    details = {c["way"]: c["detail"] for c in result["checks"]}
    assert details["answers the lab's client certificate"].startswith("answered {")
    assert all(d.startswith("refused") for w, d in details.items() if w.startswith("refuses"))
    assert [s["name"] for s in result["summary"]] == [
        "TLS: every port answers the lab's client certificate",
        "TLS: every port refuses plain HTTP",
        "TLS: every port refuses TLS without a client certificate",
        "TLS: every port refuses another CA's client certificate",
    ]


def test_a_port_that_answers_everyone_fails(tls_files):  # noqa: F811
    with running_cluster("3.5", size=1) as cluster:
        # The plain member's port given as https: the control fails (no TLS there), plain HTTP is answered.
        url = cluster.endpoints[0].replace("http://", "https://")
        result = lab_tls_check.run(params([url], tls_files))
    assert not result["ok"]
    by_way = {c["way"]: c for c in result["checks"]}
    assert not by_way["answers the lab's client certificate"]["ok"]
    assert not by_way["refuses plain HTTP"]["ok"] and by_way["refuses plain HTTP"]["detail"].startswith(
        "answered"
    )
    failed = [s for s in result["summary"] if not s["ok"]]
    assert url in failed[0]["detail"]


def test_http_urls_are_refused_in_one_line(tls_files):  # noqa: F811
    with pytest.raises(
        ValueError, match=r"not https://HOST:PORT URLs: http://127.0.0.1:1 \(is the lab built"
    ):
        lab_tls_check.run(params(["http://127.0.0.1:1"], tls_files))
