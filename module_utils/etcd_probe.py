# Copyright: etcd split-brain lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way the modules ask members about themselves: status, member list and alarms of many members at
once, one thread a member."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.etcd_client import client_from_params
from ansible.module_utils.etcd_errors import EtcdError


def probe_member(endpoint, params, members=True, alarms=False):
    """One member's status and, on request, its member list and alarms, over one client; never raises.

    The one way the modules ask a member about itself (etcd_endpoint_status, etcd_consistency, etcd_member,
    etcd_force_guard). Returns a dict: endpoint; status (the raw /v3/maintenance/status reply, or None when
    the member did not answer); clock_offset (from the reply's Date header); members (the raw member list
    reply, or None); alarms (the raw alarm list reply, or None); error (why the status or the member list
    failed, or None); alarms_error. Alarms are asked only of a member that follows a leader: an alarm GET
    goes through Raft, and on a member without a leader it hangs until the timeout.
    """
    out = {
        "endpoint": endpoint,
        "status": None,
        "clock_offset": None,
        "members": None,
        "alarms": None,
        "error": None,
        "alarms_error": None,
    }
    try:
        with client_from_params(endpoint, params) as client:
            reply = client.status()
            out["status"], out["clock_offset"] = reply.data, reply.clock_offset
            if members:
                try:
                    out["members"] = client.member_list().data
                except EtcdError as exc:
                    out["error"] = f"member list failed: {exc}"
            if alarms and out["status"].get("leader", "0") not in ("0", 0, None):
                try:
                    out["alarms"] = client.alarms().data
                except EtcdError as exc:
                    out["alarms_error"] = str(exc)
    except EtcdError as exc:
        out["error"] = str(exc)
    return out


def parallel_map(func, items, max_workers=16):
    """Run func over items in threads, keeping order. func must not raise (catch inside)."""
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(max_workers, len(items))) as pool:
        return list(pool.map(func, items))
