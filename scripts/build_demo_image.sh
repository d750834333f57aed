#!/usr/bin/env bash
# Builds the demo guest image: a 32 MiB MBR disk that SeaBIOS boots through syslinux into Debian's
# cloud kernel and a busybox initramfs, which prints a banner and gives a root shell on the screen
# and on the serial port. No loop mounts: the FAT file system is written with mtools.
#
# usage: scripts/build_demo_image.sh [OUTPUT_DIR]      (default: <repo>/var/images)
# writes OUTPUT_DIR/demo.qcow2 and OUTPUT_DIR/demo.qcow2.sha256
#
# environment:
#   FORCE=1                 rebuild even when the image is newer than this script and its files
#   DEMO_KERNEL_DEB=PATH    use this linux-image-*-cloud-amd64 .deb instead of downloading one
#   DEMO_IMAGE_CACHE=DIR    where downloaded kernel packages are kept (default: <repo>/var/cache/demo-image)
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(dirname "$script_dir")
files_dir="$script_dir/demo-image"
output_dir=${1:-"$repo_root/var/images"}
cache_dir=${DEMO_IMAGE_CACHE:-"$repo_root/var/cache/demo-image"}
image="$output_dir/demo.qcow2"

disk_size_mib=32
partition_offset=$((2048 * 512))
mbr_bin=/usr/lib/syslinux/mbr/mbr.bin

log() { printf 'build_demo_image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

image_is_fresh() {
    [[ -s "$image" && -s "$image.sha256" ]] || return 1
    [[ "$image" -nt "${BASH_SOURCE[0]}" ]] || return 1
    local source
    for source in "$files_dir"/*; do
        [[ "$image" -nt "$source" ]] || return 1
    done
}

if [[ "${FORCE:-0}" != 1 ]] && image_is_fresh; then
    log "$image is up to date"
    exit 0
fi

for tool in apt-cache apt-get dpkg-deb cpio gzip sfdisk mformat mcopy syslinux qemu-img sha256sum; do
    command -v "$tool" >/dev/null || die "$tool not found (run scripts/bootstrap.sh)"
done
[[ -r "$mbr_bin" ]] || die "$mbr_bin not found (package syslinux-common)"
busybox_bin=/bin/busybox
[[ -x "$busybox_bin" ]] || die "$busybox_bin not found (package busybox-static)"
if ldd "$busybox_bin" >/dev/null 2>&1; then
    die "$busybox_bin is dynamically linked; the initramfs needs busybox-static"
fi

started=$SECONDS
work=$(mktemp -d /tmp/demo-image.XXXXXX)
trap 'rm -rf "$work"' EXIT

# 1. The kernel. The versioned package behind the metapackage changes with security updates.
if [[ -n "${DEMO_KERNEL_DEB:-}" ]]; then
    kernel_deb=$DEMO_KERNEL_DEB
    [[ -r "$kernel_deb" ]] || die "DEMO_KERNEL_DEB=$kernel_deb is not readable"
else
    resolve_kernel_package() {
        apt-cache depends linux-image-cloud-amd64 2>/dev/null \
            | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }'
    }
    kernel_package=$(resolve_kernel_package)
    if [[ -z "$kernel_package" ]]; then
        log "package lists do not know linux-image-cloud-amd64; running apt-get update"
        apt-get update -qq
        kernel_package=$(resolve_kernel_package)
    fi
    [[ -n "$kernel_package" ]] || die "cannot resolve linux-image-cloud-amd64"
    mkdir -p "$cache_dir"
    kernel_deb=$(find "$cache_dir" -maxdepth 1 -name "${kernel_package}_*.deb" | sort | tail -n 1)
    if [[ -z "$kernel_deb" ]]; then
        log "downloading $kernel_package"
        mkdir -p "$work/download"
        (cd "$work/download" && apt-get -qq -o APT::Sandbox::User=root download "$kernel_package")
        find "$cache_dir" -maxdepth 1 -name 'linux-image-*.deb' -delete
        mv "$work"/download/*.deb "$cache_dir/"
        kernel_deb=$(find "$cache_dir" -maxdepth 1 -name "${kernel_package}_*.deb" | sort | tail -n 1)
    fi
fi
log "kernel package $(basename "$kernel_deb")"
dpkg-deb -x "$kernel_deb" "$work/kernel"
kernel_version=$(ls "$work/kernel/lib/modules")
[[ $(wc -w <<<"$kernel_version") -eq 1 ]] || die "expected one kernel in $kernel_deb, found: $kernel_version"
kernel_modules="$work/kernel/lib/modules/$kernel_version"
"$busybox_bin" depmod -b "$work/kernel" "$kernel_version"

# 2. The initramfs: static busybox, the modules the guest needs (with what they depend on), /init.
root="$work/initramfs"
mkdir -p "$root"/{bin,sbin,etc/acpi,proc,sys,dev,run,tmp,root,mnt/config,var/log,usr/bin,usr/sbin}
mkdir -p "$root/lib/modules/$kernel_version"
cp "$busybox_bin" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
ln -s ../bin/busybox "$root/sbin/init"

module_paths() {
    # prints the relative path of a module and of every module it depends on
    local name=$1 line
    line=$(grep -E "(^|/)${name//_/[_-]}\.ko(\.[a-z]+)?:" "$kernel_modules/modules.dep" | head -n 1) || true
    if [[ -z "$line" ]]; then
        if grep -qE "/${name//_/[_-]}\.ko\$" "$kernel_modules/modules.builtin" 2>/dev/null; then
            return 0
        fi
        die "kernel $kernel_version has no module $name"
    fi
    tr -d ':' <<<"$line" | tr ' ' '\n' | sed '/^$/d'
}
while read -r module; do
    [[ -n "$module" ]] || continue
    module_paths "$module"
done <"$files_dir/modules" | sort -u | while read -r path; do
    mkdir -p "$root/lib/modules/$kernel_version/$(dirname "$path")"
    cp "$kernel_modules/$path" "$root/lib/modules/$kernel_version/$path"
done
cp "$kernel_modules/modules.builtin" "$kernel_modules/modules.order" "$root/lib/modules/$kernel_version/"
"$busybox_bin" depmod -b "$root" "$kernel_version"

install -m 0755 "$files_dir/init" "$root/init"
install -m 0644 "$files_dir/inittab" "$root/etc/inittab"
install -m 0644 "$files_dir/profile" "$root/etc/profile"
install -m 0644 "$files_dir/modules" "$root/etc/modules"
install -m 0644 "$files_dir/acpid.conf" "$root/etc/acpid.conf"
install -m 0755 "$files_dir/acpi-power" "$root/etc/acpi/power"
install -m 0755 "$files_dir/udhcpc.script" "$root/etc/udhcpc.script"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
echo demo >"$root/etc/hostname"
(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --quiet --null -o -H newc -R 0:0) \
    | gzip -9 >"$work/initrd.gz"

# 3. The disk: MBR with syslinux's boot code, one bootable FAT partition from sector 2048.
disk="$work/disk.img"
truncate -s "${disk_size_mib}M" "$disk"
echo '2048,,e,*' | sfdisk --quiet --label dos "$disk"
dd if="$mbr_bin" of="$disk" bs=440 count=1 conv=notrunc status=none
export MTOOLS_SKIP_CHECK=1
partition_sectors=$(((disk_size_mib * 1024 * 1024 - partition_offset) / 512))
mformat -i "$disk@@$partition_offset" -T "$partition_sectors" -h 64 -s 32 -H 2048 -v DEMO ::
syslinux --offset "$partition_offset" --install "$disk"
cp "$work/kernel/boot/vmlinuz-$kernel_version" "$work/vmlinuz"
mcopy -i "$disk@@$partition_offset" "$work/vmlinuz" "$work/initrd.gz" "$files_dir/syslinux.cfg" ::/

# 4. qcow2 and its checksum, moved into place only when complete.
mkdir -p "$output_dir"
qemu-img convert -f raw -O qcow2 "$disk" "$work/demo.qcow2"
(cd "$work" && sha256sum demo.qcow2 >demo.qcow2.sha256)
mv -f "$work/demo.qcow2" "$image"
mv -f "$work/demo.qcow2.sha256" "$image.sha256"
log "built $image ($(du -k "$image" | cut -f1) KiB, kernel $kernel_version) in $((SECONDS - started)) s"
