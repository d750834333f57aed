#!/usr/bin/env bash
# Makes this machine able to run a real Cinder (block storage) next to the cloud, for the volume tests and
# for `make demo` with DEMO_CINDER=1:
#   - the Debian packages a Cinder NFS backend and QEMU's network disks need (nfs-common for mount.nfs,
#     qemu-block-extra for QEMU's userspace iSCSI/RBD, open-iscsi for the host's iSCSI initiator name)
#   - the virtualenv .venv-cinder with Cinder 29.0.0, python-cinderclient and gunicorn
#     (scripts/requirements/cinder.txt), kept apart from the project's own .venv
# RabbitMQ (Cinder's message bus) comes from bootstrap.sh --with-test-deps. Each step is skipped when it is
# already done, so a second run takes a moment.
#
# usage: scripts/setup_cinder.sh        environment: PYTHON (default python3)
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(dirname "$script_dir")
venv="$repo_root/.venv-cinder"
requirements="$script_dir/requirements/cinder.txt"
stamp="$venv/.requirements-installed"

log() { printf 'setup_cinder: %s\n' "$*"; }
. "$script_dir/lib/apt.sh"
die() { printf 'setup_cinder: error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (it installs Debian packages)"

# --- Debian packages -----------------------------------------------------------------------------
packages=(nfs-common qemu-block-extra open-iscsi)
apt_install_missing "${packages[@]}"

# The iSCSI initiator name goes into the connector every compute host reports; open-iscsi's package
# scripts make one, but not when they were skipped.
initiator_file=/etc/iscsi/initiatorname.iscsi
if ! grep -q '^InitiatorName=' "$initiator_file" 2>/dev/null; then
    mkdir -p /etc/iscsi
    name=$(iscsi-iname 2>/dev/null || printf 'iqn.1993-08.org.debian:01:%s' "$(head -c6 /dev/urandom | od -An -tx1 | tr -d ' \n')")
    printf 'InitiatorName=%s\n' "$name" >"$initiator_file"
    log "wrote $initiator_file"
fi

# --- the virtualenv ------------------------------------------------------------------------------
if [[ -f "$stamp" && "$stamp" -nt "$requirements" && -x "$venv/bin/cinder-volume" ]]; then
    log ".venv-cinder up to date"
    exit 0
fi
if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "creating .venv-cinder"
    rm -rf "$venv"
    "${PYTHON:-python3}" -m venv "$venv"
fi
log "installing $(basename "$requirements") into .venv-cinder"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" 2> >(grep -v '^WARNING: Location' >&2)
for program in cinder-api cinder-scheduler cinder-volume cinder-manage gunicorn; do
    [[ -x "$venv/bin/$program" ]] || die ".venv-cinder/bin/$program is missing after the install"
done
[[ -f "$venv/etc/cinder/api-paste.ini" ]] || die ".venv-cinder/etc/cinder/api-paste.ini is missing after the install"
touch "$stamp"
log ".venv-cinder ready"
