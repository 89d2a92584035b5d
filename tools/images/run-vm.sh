#!/usr/bin/env bash
# Boots Debian 12's own kernel under qemu (software emulation) on a disk holding an image's
# filesystem, to run the service on a cgroup v2 kernel (this machine and CI are cgroup v1):
#
#   tools/images/run-vm.sh IMAGE_DIR LOG      (IMAGE_DIR from build-root.sh; LOG: serial console)
#
# The disk is the image's root plus vm/ (init.sh as the kernel's init=, check.py, and env.sh
# with the image's ENV and ENTRYPOINT from its image.json), made by `mkfs.ext4 -d`, so nothing is
# mounted on the host. The kernel and its stock initrd come from /boot (package
# linux-image-amd64). The VM powers itself off; a VM that hangs is stopped after VM_TIMEOUT_S.
set -euo pipefail
shopt -s inherit_errexit

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log() { printf 'run-vm: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[[ $# -eq 2 ]] || die "usage: run-vm.sh IMAGE_DIR LOG"
image=$1 serial=$2
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is missing: run \`make deps\`"
# shellcheck disable=SC2012 # Debian's kernel names: vmlinuz-<version>-amd64
kernel=$(ls -1 /boot/vmlinuz-*-amd64 2>/dev/null | sort -V | tail -n 1)
[[ -n $kernel ]] || die "no Debian kernel in /boot: run \`make deps\` (linux-image-amd64)"
initrd=/boot/initrd.img-${kernel#/boot/vmlinuz-}
[[ -r $initrd ]] || die "$initrd is missing"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Hard links: the disk's source tree costs no copy of the image.
mkdir "$work/tree"
cp -al "$image/root/." "$work/tree/"
mkdir "$work/tree/vm-check"
install -m 0755 "$HERE/vm/init.sh" "$work/tree/vm-check/init.sh"
install -m 0644 "$HERE/vm/check.py" "$work/tree/vm-check/check.py"
{
    jq -r '.env | to_entries[] | "export \(.key)=\(.value | @sh)"' "$image/image.json"
    # Cloud Run sets PORT. Templates on (forks are moved into their cgroup v2 leaf), but no
    # spare forks: the check then proves that every execution's cgroup is gone afterwards,
    # which a spare waiting in its own cgroup would blur. A memory limit the bomb reaches in a
    # few steps, and CPU and wall limits far above it: under software emulation the guest's
    # clock runs on while a busy host starves its vCPU, and the default 10 s of CPU ran out at
    # 417 to 669 MB of 700 (CI, 4 times).
    echo "export PORT=8080 RUST_LOG=info SPARE_FORKS=0"
    echo "export MEMORY_LIMIT_MIB=256 CPU_LIMIT_S=60 MAX_TIMEOUT_S=60"
    jq -r '"set -- \(.entrypoint | map(@sh) | join(" "))"' "$image/image.json"
} >"$work/tree/vm-check/env.sh"

size_mib=$(( $(du -s -B1M "$work/tree" | cut -f1) + 256 ))
mkfs.ext4 -q -F -L root -d "$work/tree" "$work/disk.img" "${size_mib}M"

log "booting $kernel (tcg) with a ${size_mib} MiB disk; serial console in $serial"
timeout --signal=KILL "${VM_TIMEOUT_S:-900}" qemu-system-x86_64 \
    -accel tcg -cpu max -smp 2 -m 2048 -nographic -monitor none -no-reboot \
    -kernel "$kernel" -initrd "$initrd" \
    -append "console=ttyS0 root=/dev/vda rw rootfstype=ext4 init=/vm-check/init.sh panic=-1 quiet" \
    -drive "file=$work/disk.img,format=raw,if=virtio" \
    -serial "file:$serial" -nic none ||
    die "qemu failed or timed out (exit $?); see $serial"
