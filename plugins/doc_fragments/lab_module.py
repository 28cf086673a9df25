"""Documentation that every module of the lab shares: its authors, and how it runs in check and diff mode.

Every module in library/ extends it (`extends_documentation_fragment: [lab_module]`, ansible.cfg's
doc_fragment_plugins) and adds only what is its own, such as the C(details) of what its check mode does.
Each module builds its AnsibleModule with check mode supported (module_utils/etcd_client.py's etcd_module
does it for the etcd_* modules; tests/unit/test_etcd_docs.py checks every module) and returns no diff.
"""


class ModuleDocFragment:
    DOCUMENTATION = r"""
author:
  - etcd split-brain lab contributors
attributes:
  check_mode:
    description: Can run in check mode and report what it would change without changing anything.
    support: full
  diff_mode:
    description: Would return the details of what changed (or would change) in diff mode.
    support: none
"""
