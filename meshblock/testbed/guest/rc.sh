#!/bin/sh
# Second stage, run once by busybox init in the real root.  Settings come from
# the kernel command line:
#   mbtb.hostname=NAME  mbtb.ip=ADDR/PREFIX  mbtb.gw=ADDR
#   mbtb.share=TAG:/mount/point[:ro][,TAG2:/other[:ro]]   (9p virtfs shares)
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LANG=C.UTF-8

say() { echo "mbtb-rc[$(cut -d' ' -f1 /proc/uptime)]: $*" >/dev/console; }

say "boot script started"
hostname=guest ip= gw= shares=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        mbtb.hostname=*) hostname="${arg#mbtb.hostname=}" ;;
        mbtb.ip=*) ip="${arg#mbtb.ip=}" ;;
        mbtb.gw=*) gw="${arg#mbtb.gw=}" ;;
        mbtb.share=*) shares="${arg#mbtb.share=}" ;;
    esac
done

mkdir -p /dev/pts /dev/shm /tmp /run/lock /run/lock/iscsi /var/lock /etc/rtslib-fb-target /etc/nvme
mount -t devpts -o gid=5,mode=620,ptmxmode=000 devpts /dev/pts
mount -t tmpfs -o nosuid,nodev tmpfs /dev/shm
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /tmp
modprobe configfs 2>/dev/null
mount -t configfs configfs /sys/kernel/config
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
ln -sfn /proc/self/fd /dev/fd

hostname "$hostname"
echo "$hostname" >/etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n' "$hostname" >/etc/hosts

# Identities: one per guest, never the ones baked into the image.
uuid=$(cat /proc/sys/kernel/random/uuid)
echo "nqn.2014-08.org.nvmexpress:uuid:$uuid" >/etc/nvme/hostnqn
echo "$uuid" >/etc/nvme/hostid
cat /proc/sys/kernel/random/uuid | tr -d - >/etc/machine-id
iqn_suffix=$(cut -c1-12 /proc/sys/kernel/random/uuid | tr -d -)
echo "InitiatorName=iqn.1993-08.org.debian:01:mbtb-$hostname-$iqn_suffix" >/etc/iscsi/initiatorname.iscsi

modprobe -a virtio_net virtio_console virtio_rng 9p 9pnet_virtio 2>/dev/null

# Hardware the emulated PC has but no test uses; probing it (the floppy above all) only costs boot time.
mkdir -p /etc/modprobe.d
for m in floppy kvm kvm_amd kvm_intel ccp i2c_piix4 ata_piix ata_generic pata_acpi joydev psmouse \
         serio_raw pcspkr evdev; do
    echo "blacklist $m"
done >/etc/modprobe.d/mbtb-unused-hardware.conf

say "starting udev"
udevd=/lib/systemd/systemd-udevd
[ -x "$udevd" ] || udevd=/usr/lib/systemd/systemd-udevd
"$udevd" --daemon
udevadm trigger --action=add --type=subsystems
# Not the CPUs: their modaliases load a dozen accelerated crypto modules whose self-tests
# are slow under emulation; the kernel loads what it needs on first use.
udevadm trigger --action=add --type=devices --subsystem-nomatch=cpu
udevadm settle --timeout=60
say "udev settled"

ip link set lo up
if [ -n "$ip" ]; then
    i=0
    while [ ! -e /sys/class/net/eth0 ] && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    ip addr add "$ip" dev eth0
    ip link set eth0 up
    [ -n "$gw" ] && ip route add default via "$gw"
fi

if [ -n "$shares" ]; then
    for spec in $(echo "$shares" | tr ',' ' '); do
        tag="${spec%%:*}"
        rest="${spec#*:}"
        mnt="${rest%%:*}"
        opts="trans=virtio,version=9p2000.L,msize=262144"
        case "$rest" in *:ro) opts="$opts,ro" ;; esac
        mkdir -p "$mnt"
        mount -t 9p -o "$opts" "$tag" "$mnt" || say "cannot mount share $tag at $mnt"
    done
fi

if command -v iscsid >/dev/null 2>&1; then
    iscsid || say "iscsid did not start"
fi

touch /run/mbtb/ready
say "ready: $hostname $ip"
