#!/bin/sh
# PID 1 of the cgroup v2 check (tools/images/run-vm.sh boots it with init=): inside Debian 12's
# own kernel, on a disk holding the Cloud Run image's filesystem, it sets up what a Cloud Run
# gen2 container sees, starts the image's ENTRYPOINT with its ENV, runs check.py against it,
# prints everything on the serial console and powers the machine off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
say() { echo "VMCHECK $*"; }
say "boot $(uname -r)"

# The initramfs moved /proc, /sys, /dev and /run here; mount whatever it did not.
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mount -t cgroup2 cgroup2 /sys/fs/cgroup || say "fatal: no cgroup2"
mount -t tmpfs -o mode=1777 tmpfs /tmp
# As in the Cloud Run run of the image tests: read-only but /tmp.
mount -o remount,ro /

# The container's cgroup, as gen2 gives one: its own cgroup with the cpu, memory and pids
# controllers delegated and a memory limit (the instance's), entered through a cgroup namespace,
# so the service sees it as the root of its cgroup2 mount.
echo "+cpu +memory +pids" >/sys/fs/cgroup/cgroup.subtree_control
mkdir /sys/fs/cgroup/container
echo 1536M >/sys/fs/cgroup/container/memory.max

# Loopback up (no `ip` in the image): SIOCSIFFLAGS with IFF_UP | IFF_RUNNING on "lo".
python3 -c 'import fcntl, socket, struct
fcntl.ioctl(socket.socket(), 0x8914, struct.pack("16sH22x", b"lo", 0x41))'

# shellcheck source=/dev/null # written by run-vm.sh from the image's image.json
. /vm-check/env.sh
# A container's own PID 1 alone in its cgroup, as the runtime starts it: the new PID namespace's
# first process moves itself into container/, then takes a cgroup namespace there and mounts
# cgroup2 afresh, so the service sees container/ as the root of /sys/fs/cgroup.
unshare --pid --fork --mount --mount-proc -- sh -c '
  echo $$ >/sys/fs/cgroup/container/cgroup.procs
  exec unshare --cgroup -- sh -c "umount /sys/fs/cgroup &&
    mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec \"\$@\"" sh "$@"' sh "$@" \
  >/tmp/service.log 2>&1 &

python3 /vm-check/check.py
say "exit $?"
sed 's/^/SERVICE /' /tmp/service.log | tail -n 40
sync
echo o >/proc/sysrq-trigger
sleep 30
