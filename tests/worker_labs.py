"""The lab identity of each pytest process, so that the suite's labs never meet each other or the learner's.

Every pytest-xdist worker (and a run without xdist, as gw0) builds labs of its own name, subnet and state dir
(sbgw0, 198.18.215.0/24, .lab-gw0/; sbgw1 ...), molecule labs of its own (MOLECULE_LAB_NAME/_SUBNET, read by
.config/molecule/config.yml) and incident campaigns of its own (INCIDENTS_LAB_*), so that two labs run side by
side, and a learner's lab from ./setup.sh (sblab, .lab/) is neither in the suite's way nor touched by it.
tests/conftest.py sets them in pytest_configure, before any test module imports lablib (which reads them
once), and never in xdist's controller: its environment is the workers', and gw0's identity there would be
every worker's. A LAB_NAME given by the caller wins.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORKER_LABS = {
    f"gw{n}": {
        "LAB_NAME": f"sbgw{n}",
        "LAB_SUBNET": f"198.18.{215 + n}.0/24",
        "LAB_STATE_DIR": str(ROOT / f".lab-gw{n}"),
        "MOLECULE_LAB_NAME": f"sbmx{n}",
        "MOLECULE_LAB_SUBNET": f"198.18.{226 + n}.0/24",
        "INCIDENTS_LAB_NAME": f"sbinx{n}",
        "INCIDENTS_LAB_SUBNET": f"198.18.{234 + n}.0/24",
        "INCIDENTS_LAB_STATE_DIR": str(ROOT / f".lab-incidents-gw{n}"),
    }
    for n in range(5)
}


def worker_identity(config) -> str | None:
    """The WORKER_LABS key of this pytest process: its xdist worker id, gw0 without xdist, None in xdist's
    controller (which starts the workers and runs no test)."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        return workerinput["workerid"]
    if getattr(config.option, "numprocesses", None):
        return None
    return "gw0"


def identity_env(config, environ) -> dict[str, str]:
    """What to add to `environ` for this process: its worker's identity, or nothing (the controller, a worker
    beyond WORKER_LABS, or a LAB_NAME the caller gave)."""
    worker = worker_identity(config)
    if worker not in WORKER_LABS or "LAB_NAME" in environ:
        return {}
    return WORKER_LABS[worker]
