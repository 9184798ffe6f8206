#!/bin/bash
# Build a tiny busybox initramfs that mounts the host's / read-only over virtio-9p,
# mounts the work dir read-write at its own path, runs <vmdir>/cmd.sh there and powers off.
# With vmboot=systemd on the kernel command line it boots the host's systemd as PID 1
# instead and runs cmd.sh as a oneshot unit (tests/test_vm_systemd.py).
# usage: mkinitramfs.sh <modules dir holding kernel/{fs,net}/...9p modules> <out.cpio.gz>
set -euo pipefail
MODDIR=$1
OUT=$2
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T"/{bin,dev,proc,sys,newroot,lib/modules}
cp /bin/busybox "$T/bin/busybox"
for a in sh mount umount mkdir insmod chroot poweroff cat echo sleep ls sed sync ln switch_root; do
    ln -s busybox "$T/bin/$a"
done
for m in fs/netfs/netfs net/9p/9pnet net/9p/9pnet_virtio fs/9p/9p; do
    f=$(ls "$MODDIR/kernel/$m.ko"* 2>/dev/null | head -1) || true
    [ -n "$f" ] || continue # built in on this kernel
    case "$f" in
    *.xz) xz -dc "$f" ;;
    *.zst) zstd -dc "$f" ;;
    *) cat "$f" ;;
    esac >"$T/lib/modules/$(basename "$m").ko"
done
cat >"$T/init" <<'INIT'
#!/bin/sh
export PATH=/bin
# systemd as PID 1: /var on tmpfs, runtime units in /run/systemd/system (the host's /etc
# stays read-only), a target of only the basic system and the scenario unit, whose output
# goes to the virtio console and whose exit status to <vmdir>/rc.
boot_systemd() {
    mount -t tmpfs tmpfs /newroot/var
    for d in lib log tmp cache spool; do mkdir -p /newroot/var/$d; done
    U=/newroot/run/systemd/system
    mkdir -p $U
    {
        echo "[Unit]"
        echo "Description=damond VM test: the basic system and the scenario"
        echo "Requires=basic.target"
        echo "After=basic.target"
        echo "Wants=damond-vm-scenario.service"
    } >$U/damond-vm.target
    {
        echo "[Unit]"
        echo "Description=damond VM scenario $D/cmd.sh"
        echo "After=basic.target"
        echo "[Service]"
        echo "Type=oneshot"
        echo "TimeoutStartSec=infinity"
        echo "WorkingDirectory=$W"
        echo "Environment=HOME=/tmp"
        echo "ExecStart=/bin/sh $D/cmd.sh"
        echo "StandardInput=null"
        echo "StandardOutput=tty"
        echo "StandardError=inherit"
        echo "TTYPath=$OUTDEV"
        echo "ExecStopPost=-/bin/sh -c 'case \$\$EXIT_STATUS in [0-9]*) echo \$\$EXIT_STATUS ;; *) echo 255 ;; esac >$D/rc; sync'"
        echo "ExecStopPost=/bin/systemctl poweroff --force --force"
    } >$U/damond-vm-scenario.service
    ln -s /dev/null $U/serial-getty@hvc0.service # the console is the scenario's output
    umount /proc /sys /dev 2>/dev/null
    # An empty $container tells systemd it runs on a machine, not in a container: a host
    # root with /.dockerenv would otherwise make it skip the shared mount propagation
    # (and more) that it sets up on a real machine.
    export container=
    exec switch_root /newroot /lib/systemd/systemd --unit=damond-vm.target
}
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs dev /dev
for m in netfs 9pnet 9pnet_virtio 9p; do [ -f /lib/modules/$m.ko ] && insmod /lib/modules/$m.ko; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /newroot || { echo "mount hostroot failed"; poweroff -f; }
mount -t proc proc /newroot/proc; mount -t sysfs sysfs /newroot/sys; mount -t devtmpfs dev /newroot/dev
mount -t tmpfs tmpfs /newroot/run; mount -t tmpfs tmpfs /newroot/tmp
mkdir -p /newroot/dev/pts /newroot/dev/shm; mount -t devpts devpts /newroot/dev/pts; mount -t tmpfs tmpfs /newroot/dev/shm
W=$(sed -n 's/.*vmwork=\([^ ]*\).*/\1/p' /proc/cmdline)
D=$(sed -n 's/.*vmdir=\([^ ]*\).*/\1/p' /proc/cmdline)
mkdir -p /newroot$W 2>/dev/null
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose work /newroot$W || echo "mount work failed"
OUTDEV=/dev/hvc0; [ -e $OUTDEV ] || OUTDEV=/dev/console
case " $(cat /proc/cmdline) " in *" vmboot=systemd "*) boot_systemd ;; esac
chroot /newroot /bin/sh -c "cd $W && HOME=/tmp PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /bin/sh $D/cmd.sh" > /newroot$OUTDEV 2>&1 < /dev/null
echo $? > /newroot$D/rc
sync; umount /newroot$W 2>/dev/null
poweroff -f
INIT
chmod +x "$T/init"
(cd "$T" && find . | cpio -o -H newc --quiet | gzip -1) >"$OUT"
