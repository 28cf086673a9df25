#!/lab/bin/busybox sh
# `date` inside the etcd container of the kind platform. The official etcd image is distroless (no shell, no
# date): an init container copies a static busybox and this script to /lab/bin, first on the container's
# PATH, so `kubectl exec -n kube-system etcd-0 -- date` works as in the exercise. It prints the wall clock
# as this member's etcd sees it: the clock-skew pod writes the offset it applied to etcd's process into
# /lab/clock/offset (seconds), as libfaketime does for `./lab exec` on the local platform. Arguments go to
# busybox date (for example +%s).
bin=${LAB_BIN:-/lab/bin}
offset=0
if [ -r "${LAB_CLOCK:-/lab/clock}/offset" ]; then
  offset=$("$bin/busybox" cat "${LAB_CLOCK:-/lab/clock}/offset")
fi
now=$("$bin/busybox" date +%s)
exec "$bin/busybox" date -d "@$((now + ${offset%.*}))" "$@"
