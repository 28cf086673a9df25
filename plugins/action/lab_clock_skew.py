# Copyright: etcd split-brain lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""lab_clock_skew: run in Ansible's worker when the target is the controller (lab_inprocess.py)."""

from __future__ import annotations

from ansible.plugins.loader import action_loader

ActionModule = action_loader.get("lab_inprocess", class_only=True)
