#!/usr/bin/env bash
# Makes a fresh Debian 12 machine (as root, no systemd) ready to run and test the cloud:
# Debian packages, libvirt and Redis running, the virtualenv .venv with the project installed,
# and the demo guest image in var/images. Each step is skipped when already done, so a second
# run takes seconds.
#
# usage: scripts/bootstrap.sh [--with-test-deps] [--skip-image]
#   --with-test-deps (or WITH_TEST_DEPS=1)  also Chromium, PostgreSQL and RabbitMQ for the test suite, and
#                    the virtualenvs .venv-keystone and .venv-openstack (scripts/setup_test_venvs.sh)
#                    and .venv-cinder (scripts/setup_cinder.sh)
#   --skip-image     (or SKIP_DEMO_IMAGE=1) do not build var/images/demo.qcow2
#   DEMO_CINDER=1    also PostgreSQL, RabbitMQ and .venv-cinder, for `make demo` with a local Cinder
# environment: PYTHON (default python3) is the interpreter the virtualenv is made from.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(dirname "$script_dir")
venv="$repo_root/.venv"
pip_stamp="$venv/.bootstrap-installed"

with_test_deps=${WITH_TEST_DEPS:-0}
with_cinder=${DEMO_CINDER:-0}
skip_image=${SKIP_DEMO_IMAGE:-0}
for argument in "$@"; do
    case "$argument" in
        --with-test-deps) with_test_deps=1 ;;
        --skip-image) skip_image=1 ;;
        -h | --help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bootstrap: unknown argument $argument" >&2; exit 2 ;;
    esac
done

log() { printf 'bootstrap: %s\n' "$*"; }
. "$script_dir/lib/apt.sh"
die() { printf 'bootstrap: error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (it installs Debian packages and starts libvirtd)"
started=$SECONDS

port_open() {
    timeout 2 bash -c ": >/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# --- Debian packages -----------------------------------------------------------------------------
packages=(
    libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-dev pkg-config
    qemu-system-x86 qemu-utils dnsmasq-base iptables iproute2 nftables conntrack iputils-ping
    busybox-static syslinux syslinux-common mtools cpio fdisk genisoimage
    novnc python3-venv gcc python3-dev procps
)
# Services: install a server only when none answers already (these machines may run their own).
port_open 6379 || packages+=(redis-server)
if [[ "$with_test_deps" == 1 ]]; then
    packages+=(chromium openssh-client)
    # The fault tests (tests/faults/) start and restart brokers of their own on free ports.
    command -v redis-server >/dev/null || packages+=(redis-server)
    [[ -x /usr/sbin/rabbitmq-server ]] || packages+=(rabbitmq-server)
fi
# Cinder (the tests' and the demo's) keeps its database in PostgreSQL and talks over RabbitMQ.
if [[ "$with_test_deps" == 1 || "$with_cinder" == 1 ]]; then
    port_open 5432 || packages+=(postgresql)
    command -v psql >/dev/null || packages+=(postgresql-client)
    port_open 5672 || packages+=(rabbitmq-server)
fi

apt_install_missing "${packages[@]}"

# --- services ------------------------------------------------------------------------------------
service_arguments=()
[[ "$with_test_deps" == 1 || "$with_cinder" == 1 ]] && service_arguments+=(--with-databases)
"$script_dir/start_services.sh" "${service_arguments[@]}" | sed 's/^start_services: /bootstrap: /'

# --- virtualenv ----------------------------------------------------------------------------------
if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "creating $venv"
    "${PYTHON:-python3}" -m venv "$venv"
    rm -f "$pip_stamp"
fi
if [[ -f "$pip_stamp" && "$pip_stamp" -nt "$repo_root/pyproject.toml" ]]; then
    log "python packages up to date"
else
    log "installing the project and its dev extras into .venv"
    (cd "$repo_root" && "$venv/bin/pip" install --quiet --disable-pip-version-check -e '.[dev]')
    touch "$pip_stamp"
fi

# --- the test suite's own Keystone and openstack CLI, each in its own virtualenv -------------------
if [[ "$with_test_deps" == 1 ]]; then
    "$script_dir/setup_test_venvs.sh" | sed 's/^setup_test_venvs: /bootstrap: /'
fi
if [[ "$with_test_deps" == 1 || "$with_cinder" == 1 ]]; then
    # A real Cinder for the volume tests, in .venv-cinder, and the packages its NFS backend needs.
    "$script_dir/setup_cinder.sh" | sed 's/^setup_cinder: /bootstrap: /'
fi

# --- demo guest image ----------------------------------------------------------------------------
if [[ "$skip_image" != 1 ]]; then
    "$script_dir/build_demo_image.sh" "$repo_root/var/images" 2>&1 | sed 's/^build_demo_image: /bootstrap: /'
fi

log "ready in $((SECONDS - started)) s"
