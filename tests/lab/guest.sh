#!/usr/bin/env bash
# guest.sh: the lab's guest disk image, a CirrOS stand-in made of Debian 12 packages, cached on this machine.
#
# A raw disk image (about 18 MB): a FAT file system without a partition table, booted by SYSLINUX
# (installed into the image file with mtools: no loop device, no mount), holding Debian's cloud
# kernel and an initramfs with Debian's dynamic busybox, the glibc it needs, the virtio modules
# and the scripts of tests/lab/guest/ (what they do: their headers, and docs/lab.md). Only packages
# are downloaded (`apt-get download` from the machine's apt sources), so the lab needs no CirrOS
# download. Built once per content of this script and tests/lab/guest/:
# /var/cache/ooa-lab/guest-<first 12 hex of their sha256>/lab-guest.img, beside a `packages` file
# with the versions it holds. `make lab-guest` builds it before the timed lab.
#
# Entry points:
#   guest.sh path     print the image's path for this version (built or not)
#   guest.sh build    build it unless it exists (flock; in a temporary directory, renamed when
#                     complete), remove the images of older versions, print the path
#
# Parameters (environment): OOA_ROOTFS_CACHE (default /var/cache/ooa-lab), as rootfs.sh.
# Needs root (the initramfs's /dev/console is a device node), apt-get, dpkg-deb, depmod (kmod),
# busybox (cpio), mkfs.fat (dosfstools), mcopy (mtools) and syslinux.
set -euo pipefail

CACHE=${OOA_ROOTFS_CACHE:-/var/cache/ooa-lab}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FILES=$HERE/guest
IMAGE=lab-guest.img
# The cloud kernel: the virtio drivers Nova's libvirt guests use, a smaller package than the generic one.
KERNEL_META=linux-image-cloud-amd64
# What busybox (Debian's dynamic build: names resolved by glibc, /etc/resolv.conf) needs from libc6.
LIBS=(lib/x86_64-linux-gnu/libc.so.6 lib/x86_64-linux-gnu/libresolv.so.2 lib/x86_64-linux-gnu/ld-linux-x86-64.so.2)
# The guest's drivers: the PCI transport, the NIC and the disk Nova attaches; raw sockets for udhcpc.
# Those the kernel has built in are left out; the others come with their dependencies, in load order.
MODULES=(virtio_pci virtio_net virtio_blk af_packet)
CMDLINE="console=tty0 console=ttyS0,115200 quiet"

# digest : the first 12 hex of the sha256 of this script and the guest's files.
digest() {
  local sum
  sum=$(cat "${BASH_SOURCE[0]}" "$FILES"/* | sha256sum)
  echo "${sum:0:12}"
}

# image_path : the image's path for this version.
image_path() { echo "$CACHE/guest-$(digest)/$IMAGE"; }

# download DIR : the kernel, busybox and libc6 packages into DIR; prints the kernel package's name.
download() {
  local kernel
  kernel=$(apt-cache depends "$KERNEL_META" | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ {print $2; exit}')
  [ -n "$kernel" ] || { echo "guest.sh: apt knows no $KERNEL_META (apt-get update?)" >&2; return 1; }
  # the sandbox user _apt cannot write a root-only temporary directory
  (cd "$1" && apt-get download -q -o APT::Sandbox::User=root "$kernel" busybox libc6 >&2) ||
    { echo "guest.sh: apt-get download failed (apt-get update?)" >&2; return 1; }
  echo "$kernel"
}

# module_files KDIR KVER : the files of MODULES and their dependencies under KDIR/lib/modules/KVER,
# each after what it needs (modules.dep, made by depmod: the package leaves that to its postinst).
module_files() {
  local dir=$1/lib/modules/$2 path deps name
  local -A dep_of path_of builtin seen
  depmod -b "$1" "$2"
  while IFS=: read -r path deps; do
    dep_of[$path]=$deps
    name=${path##*/}
    name=${name%%.ko*}
    path_of[${name//-/_}]=$path
  done <"$dir/modules.dep"
  while read -r path; do
    name=${path##*/}
    name=${name%%.ko*}
    builtin[${name//-/_}]=1
  done <"$dir/modules.builtin"
  visit() {
    local p=$1 d
    [ -z "${seen[$p]:-}" ] || return 0
    seen[$p]=1
    for d in ${dep_of[$p]}; do visit "$d"; done
    echo "$p"
  }
  for name in "${MODULES[@]}"; do
    if [ -n "${builtin[$name]:-}" ]; then continue; fi
    [ -n "${path_of[$name]:-}" ] || { echo "guest.sh: kernel $2 has no module $name" >&2; return 1; }
    visit "${path_of[$name]}"
  done
}

# initramfs WORK KERNEL : the guest's root file system (WORK/root) packed as WORK/initrd.gz.
initramfs() {
  local work=$1 kernel=$2 root=$1/root kdir=$1/kernel kver lib path
  dpkg-deb -x "$work"/debs/"$kernel"_*.deb "$kdir"
  dpkg-deb -x "$work"/debs/busybox_*.deb "$work/busybox"
  dpkg-deb -x "$work"/debs/libc6_*.deb "$work/libc6"
  kver=${kernel#linux-image-}
  install -d "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,root,etc/lab-guest,lib/modules,lib64,var/www/cgi-bin}
  install -m 0755 "$work/busybox/bin/busybox" "$root/bin/busybox"
  ln -s busybox "$root/bin/sh"
  for lib in "${LIBS[@]}"; do install -D -m 0755 "$work/libc6/$lib" "$root/$lib"; done
  ln -s ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$root/lib64/ld-linux-x86-64.so.2"
  for path in $(module_files "$kdir" "$kver"); do
    install -m 0644 "$kdir/lib/modules/$kver/$path" "$root/lib/modules/"
    path=${path##*/}
    echo "${path%.ko}"
  done >"$root/etc/lab-guest/modules"
  install -m 0755 "$FILES/init" "$root/init"
  install -m 0755 "$FILES/boot" "$FILES/udhcpc" "$root/etc/lab-guest/"
  install -m 0644 "$FILES/inittab" "$root/etc/inittab"
  install -m 0755 "$FILES/index.cgi" "$root/var/www/cgi-bin/index.cgi"
  install -m 0755 "$FILES/wget" "$root/usr/bin/wget"
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
  printf 'root:x:0:\n' >"$root/etc/group"
  printf '127.0.0.1\tlocalhost\n' >"$root/etc/hosts"
  printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
  mknod -m 0600 "$root/dev/console" c 5 1 # the kernel opens it before /init mounts devtmpfs
  # busybox runs with these libraries alone (a missing one fails here, not in a VM)
  chroot "$root" /bin/busybox true || { echo "guest.sh: busybox does not run on the copied libc6" >&2; return 1; }
  (cd "$root" && find . | busybox cpio -o -H newc -R 0:0 2>/dev/null) | gzip -9 >"$work/initrd.gz"
  cp "$kdir/boot/vmlinuz-$kver" "$work/vmlinuz"
}

# disk WORK FILE : the bootable FAT image of WORK's kernel and initramfs, sized to hold them.
disk() {
  local work=$1 file=$2 kib
  cat >"$work/syslinux.cfg" <<EOF
SERIAL 0 115200
DEFAULT lab-guest
PROMPT 0
TIMEOUT 0
LABEL lab-guest
  LINUX /vmlinuz
  INITRD /initrd.gz
  APPEND $CMDLINE
EOF
  kib=$(du -k -c "$work/vmlinuz" "$work/initrd.gz" | awk 'END {print $1 + 2048}')
  mkfs.fat -C -n LAB-GUEST "$file" "$kib" >/dev/null
  mcopy -i "$file" "$work/vmlinuz" "$work/initrd.gz" "$work/syslinux.cfg" ::/
  syslinux --install "$file"
}

# build : the image, built once.
build() {
  local dir tmp kernel
  dir=$(dirname "$(image_path)")
  install -d -m 0755 "$CACHE"
  exec 8>"$CACHE/guest.lock"
  flock -w 900 8 || { echo "guest.sh: $CACHE/guest.lock held for 15 minutes" >&2; return 1; }
  if [ ! -d "$dir" ]; then
    tmp=$(mktemp -d "$dir.tmp.XXXXXX")
    # shellcheck disable=SC2064 # expanded now: the EXIT trap runs after build's locals are gone
    trap "rm -rf --one-file-system '$tmp'" EXIT
    trap 'exit 1' INT TERM
    install -d "$tmp/work/debs"
    kernel=$(download "$tmp/work/debs")
    initramfs "$tmp/work" "$kernel"
    disk "$tmp/work" "$tmp/$IMAGE"
    for deb in "$tmp"/work/debs/*.deb; do dpkg-deb --show --showformat="\${Package} \${Version}\n" "$deb"; done >"$tmp/packages"
    rm -rf "$tmp/work"
    chmod 0755 "$tmp"
    chmod 0644 "$tmp/$IMAGE" "$tmp/packages"
    mv "$tmp" "$dir"
    trap - EXIT INT TERM
  fi
  remove_stale "$dir"
  image_path
}

# remove_stale KEEP : the images of other versions of this script, and half-built ones, go.
remove_stale() {
  local d
  for d in "$CACHE"/guest-*; do
    [ -e "$d" ] && [ "$d" != "$1" ] || continue
    rm -rf --one-file-system "$d"
  done
}

case ${1:-} in
  path) image_path ;;
  build) build ;;
  *) echo "usage: $0 path|build" >&2; exit 2 ;;
esac
