#!/usr/bin/env bash
# Remove everything the lab made: writers, etcd processes, namespaces, bridge, nft tables, state directory.
# Safe to run twice, or before any setup. Usage: ./teardown.sh [ansible-playbook arguments]
set -euo pipefail
cd "$(dirname "$0")"
case "${1:-}" in
  -h|--help)
    echo "Usage: ./teardown.sh [ANSIBLE-PLAYBOOK ARGS...]   remove the lab and everything it made"; exit 0 ;;
esac
# A kind lab lives in its kind cluster: removing it needs kind and Docker, not root.
state_dir=${LAB_STATE_DIR:-.lab}
if [ "$(id -u)" -ne 0 ] && ! grep -q '"platform": "kind"' "$state_dir/lab.json" 2>/dev/null \
   && ! printf '%s\n' "$@" | grep -q 'lab_platform=kind'; then
  echo "teardown.sh: run as root (sudo ./teardown.sh): removing network namespaces needs root." >&2
  exit 1
fi
if [ ! -x .venv/bin/ansible-playbook ]; then
  # No venv means setup never got as far as building anything; sweep up the lab's names anyway.
  name=${LAB_NAME:-sblab}
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${name}-etcd-[0-9]+\$" || true); do
    pids=$(ip netns pids "$ns" || true)
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
    ip netns del "$ns"
  done
  ip link del "${name}0" 2>/dev/null || true
  rm -rf "$state_dir"
  echo "teardown.sh: nothing else to remove (no .venv: setup has not run here)"
  exit 0
fi
exec .venv/bin/ansible-playbook playbooks/teardown.yml "$@"
