#!/bin/sh
# The pr-helper container's entrypoint, with KubeVirt's contract (cmd/pr-helper/entrypoint.sh):
# virt-handler's DaemonSet runs `/entrypoint.sh -k /var/run/kubevirt/daemons/pr/pr-helper.sock`
# as root in a privileged container with the host's /dev and /etc/multipath; every argument
# goes to /usr/bin/qemu-pr-helper, which replaces this shell (same pid, same signals).
#
# multipathd: the pod has its own network namespace, where multipathd's abstract socket
# (@/org/kernel/linux/storage/multipathd) does not exist. virt-handler bind-mounts the host's
# /run/multipathd.socket (multipath-tools 0.12 and later listen there too) at
# /var/run/kubevirt/daemons/pr/multipathd.socket whenever it appears. The helper is pointed
# at it with --multipath-socket, which sets MULTIPATH_SOCKET_NAME for libmpathcmd (0.12 and
# later). A MULTIPATH_SOCKET_NAME in the container's environment wins, as in KubeVirt's script.
set -eu
socket=${MULTIPATH_SOCKET_NAME:-/var/run/kubevirt/daemons/pr/multipathd.socket}
# As KubeVirt's script does: /run/multipathd.socket, libmpathcmd's default since 0.12 (and
# the multipathd CLI's), leads there as well. Not fatal on a read-only /run.
case $socket in
  /run/multipathd.socket|/var/run/multipathd.socket) ;;
  /*) [ -e /run/multipathd.socket ] || [ -L /run/multipathd.socket ] ||
        ln -s "$socket" /run/multipathd.socket 2>/dev/null || true ;;
esac
exec /usr/bin/qemu-pr-helper --multipath-socket="$socket" "$@"
