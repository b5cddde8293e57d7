#!/bin/busybox sh
# First stage, run from the initramfs as PID 1: load the few modules needed to
# reach the root disk, mount it, put the per-boot files in place and hand over
# to busybox init in the real root (which runs rc.sh, then the agent).
/bin/busybox --install -s /bin
export PATH=/bin

fail() {
    echo "MBTB-INIT-FAILED: $*" >/dev/console
    sleep 1
    poweroff -f
}

mkdir -p /proc /sys /dev /newroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

for m in $(cat /modules/order); do
    insmod "/modules/$m" 2>/dev/null
done

# The root disk is the virtio disk with serial mbtb-root (extra disks may probe first).
serial=mbtb-root
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        mbtb.root=*) serial="${arg#mbtb.root=}" ;;
    esac
done

root=
i=0
while [ -z "$root" ]; do
    for s in /sys/block/vd*/serial; do
        [ -e "$s" ] && [ "$(cat "$s")" = "$serial" ] && root="/dev/$(basename "$(dirname "$s")")"
    done
    [ -n "$root" ] && [ -b "$root" ] && break
    root=
    i=$((i + 1))
    [ "$i" -gt 300 ] && fail "no virtio disk with serial $serial"
    sleep 0.1
done

mount -t ext4 -o rw,noatime "$root" /newroot || fail "cannot mount $root"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /newroot/run || fail "cannot mount /run"
mkdir -p /newroot/run/mbtb
cp /mbtb/* /newroot/run/mbtb/
cp /mbtb/inittab /newroot/etc/inittab
[ -x /newroot/bin/busybox ] || fail "no /bin/busybox in the root file system"

mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
exec switch_root /newroot /bin/busybox init
