# Copyright: etcd split-brain lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's one error type and the modules' shared main() wrapper that turns any failure into one line."""

from __future__ import annotations

import traceback


class EtcdError(Exception):
    """A failure talking to one endpoint; str() is the one-line message for the user."""

    def __init__(self, msg, endpoint=None, kind="error", code=None):
        super().__init__(msg)
        self.msg = msg
        self.endpoint = endpoint
        self.kind = kind  # refused, timeout, tls, not_etcd, etcd, grpc, http, url, file, protocol
        self.code = code  # the gateway's error code, the HTTP status, or the gRPC status name


def run_or_fail(module, action, local_errors=(), local_prefix="", etcd_message=str):
    """Return action(); turn any failure into one fail_json line (the modules' shared main() wrapper).

    EtcdError -> etcd_message(exc); local_errors (file system, bad report) -> "local_prefix: exc"; anything
    else is a bug: still one line, with the traceback in `exception` for -vvv."""
    try:
        return action()
    except EtcdError as exc:
        module.fail_json(msg=etcd_message(exc), changed=False)
    except local_errors as exc:
        module.fail_json(msg=f"{local_prefix}: {exc}", changed=False)
    except Exception as exc:
        module.fail_json(
            msg=f"Unexpected error ({exc.__class__.__name__}): {exc}",
            changed=False,
            exception=traceback.format_exc(),
        )


def exit_with(module, action, **kwargs):
    """main()'s last step: run action (run_or_fail's arguments in kwargs) and exit with its result."""
    module.exit_json(**run_or_fail(module, action, **kwargs))


def exit_with_run(module, run, **kwargs):
    """main()'s last step for a module whose run(params, check_mode) makes its result: exit_with that call."""
    exit_with(module, lambda: run(module.params, module.check_mode), **kwargs)
