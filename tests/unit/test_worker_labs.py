"""Each pytest process gets its own lab identity; xdist's controller none (its environment is the
workers')."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from worker_labs import WORKER_LABS, identity_env, worker_identity


def config(workerid=None, numprocesses=None):
    cfg = SimpleNamespace(option=SimpleNamespace(numprocesses=numprocesses))
    if workerid is not None:
        cfg.workerinput = {"workerid": workerid}
    return cfg


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        (config("gw1", 2), "gw1"),
        (config("gw0", 2), "gw0"),
        (config(numprocesses=2), None),  # the controller of ./test.sh's two workers
        (config(), "gw0"),  # pytest without xdist
        (config(numprocesses=0), "gw0"),  # -n 0
    ],
)
def test_worker_identity(cfg, expected):
    assert worker_identity(cfg) == expected


def test_every_worker_and_its_labs_differ_from_the_others_and_the_learners():
    for key in ("LAB_NAME", "LAB_SUBNET", "LAB_STATE_DIR", "MOLECULE_LAB_NAME", "INCIDENTS_LAB_STATE_DIR"):
        values = [labs[key] for labs in WORKER_LABS.values()]
        assert len(set(values)) == len(values), key
    subnets = [labs[k] for labs in WORKER_LABS.values() for k in ("LAB_SUBNET", "MOLECULE_LAB_SUBNET",
               "INCIDENTS_LAB_SUBNET")]  # fmt: skip
    assert len(set(subnets)) == len(subnets)
    learner = {"sblab", "198.18.213.0/24", "sbmol", "198.18.214.0/24", "sbinc", "198.18.222.0/24"}
    assert not learner & {v for labs in WORKER_LABS.values() for v in labs.values()}


def test_the_controller_and_a_caller_given_lab_add_nothing():
    assert identity_env(config(numprocesses=2), {}) == {}
    assert identity_env(config("gw1", 2), {"LAB_NAME": "mine"}) == {}
    assert identity_env(config("gw1", 2), {})["LAB_NAME"] == "sbgw1"
    assert identity_env(config(), {})["LAB_STATE_DIR"].endswith("/.lab-gw0")
