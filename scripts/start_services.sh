#!/usr/bin/env bash
# Starts what the cloud needs on this machine, each only when it is not already up: libvirt (virtlogd,
# libvirtd, configured for containers without systemd) and Redis; with databases also PostgreSQL
# (with a `cloud` database reachable as postgresql://postgres@127.0.0.1:5432/cloud) and RabbitMQ,
# which the test suite and Cinder need. Packages must be installed already (scripts/bootstrap.sh does
# both). Run as root.
#
# usage: scripts/start_services.sh [--with-databases]      or WITH_DATABASES=1
set -euo pipefail

with_databases=${WITH_DATABASES:-0}
for argument in "$@"; do
    case "$argument" in
        --with-databases) with_databases=1 ;;
        -h | --help) sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "start_services: unknown argument $argument" >&2; exit 2 ;;
    esac
done

log() { printf 'start_services: %s\n' "$*"; }
die() { printf 'start_services: error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root"

port_open() {
    timeout 2 bash -c ": >/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

redis_answers() {
    timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/6379 && printf "PING\r\n" >&3 && read -r reply <&3 &&
        [[ $reply == +PONG* ]]' 2>/dev/null
}

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every half second, fails after SECONDS
wait_until() {
    local seconds=$1 description=$2 deadline
    shift 2
    deadline=$((SECONDS + seconds))
    until "$@"; do
        ((SECONDS < deadline)) || die "$description did not come up within ${seconds} s"
        sleep 0.5
    done
}

# --- libvirt -------------------------------------------------------------------------------------
libvirt_answers() {
    timeout 10 virsh -c qemu:///system version >/dev/null 2>&1
}

mkdir -p /var/log/libvirt /var/run/libvirt /var/lib/libvirt/qemu /var/lib/libvirt/images /etc/libvirt
# libvirtd refuses to start without this user, even though the guests run as root here.
id libvirt-qemu >/dev/null 2>&1 || useradd -r -s /usr/sbin/nologin libvirt-qemu

# Containers have no cgroup delegation, no namespaces for QEMU and no security driver to speak of.
qemu_conf=$(mktemp)
trap 'rm -f "$qemu_conf"' EXIT
cat >"$qemu_conf" <<'EOF'
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
namespaces = []
cgroup_controllers = []
vnc_listen = "127.0.0.1"
remember_owner = 0
EOF
if ! cmp -s "$qemu_conf" /etc/libvirt/qemu.conf; then
    install -m 0644 "$qemu_conf" /etc/libvirt/qemu.conf
    log "wrote /etc/libvirt/qemu.conf"
    if pgrep -x libvirtd >/dev/null; then
        log "warning: libvirtd was already running; restart it to apply /etc/libvirt/qemu.conf"
    fi
fi

if ! pgrep -x virtlogd >/dev/null; then
    log "starting virtlogd"
    virtlogd -d
fi
if ! pgrep -x libvirtd >/dev/null; then
    log "starting libvirtd"
    libvirtd -d
fi
wait_until 30 "libvirt (virsh -c qemu:///system version)" libvirt_answers
log "libvirt answers on qemu:///system"

# --- Redis ---------------------------------------------------------------------------------------
if ! redis_answers; then
    command -v redis-server >/dev/null || die "nothing answers on 127.0.0.1:6379 and redis-server is not installed"
    log "starting redis-server"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_until 15 "Redis on 127.0.0.1:6379" redis_answers
fi
log "redis answers on 127.0.0.1:6379"

[[ "$with_databases" == 1 ]] || exit 0

# --- PostgreSQL ----------------------------------------------------------------------------------
postgres_version() {
    ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1
}

if ! port_open 5432; then
    version=$(postgres_version)
    [[ -n "$version" ]] || die "nothing answers on 127.0.0.1:5432 and PostgreSQL is not installed"
    if [[ ! -d "/etc/postgresql/$version/main" ]]; then
        log "creating PostgreSQL $version cluster main"
        pg_createcluster "$version" main >/dev/null
    fi
    log "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    wait_until 30 "PostgreSQL on 127.0.0.1:5432" port_open 5432
fi

postgres_sql() {
    psql -h 127.0.0.1 -p 5432 -U postgres -w -d postgres -v ON_ERROR_STOP=1 -tA "$@"
}

if ! postgres_sql -c 'select 1' >/dev/null 2>&1; then
    # A fresh Debian cluster asks for passwords over TCP; tests connect as postgres without one.
    version=$(postgres_version)
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    [[ -f "$hba" ]] || die "cannot connect as postgres to 127.0.0.1:5432 and $hba does not exist"
    if ! grep -q '^# cloud: loopback access for tests' "$hba"; then
        log "allowing password-less loopback connections as postgres in $hba"
        sed -i '1i # cloud: loopback access for tests\nhost all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
        pg_ctlcluster --skip-systemctl-redirect "$version" main reload
        sleep 1
    fi
    postgres_sql -c 'select 1' >/dev/null || die "cannot connect to postgresql://postgres@127.0.0.1:5432/postgres"
fi
if [[ $(postgres_sql -c "select 1 from pg_database where datname = 'cloud'") != 1 ]]; then
    log "creating database cloud"
    postgres_sql -c 'create database cloud' >/dev/null
fi
log "postgresql://postgres@127.0.0.1:5432/cloud is ready"

# --- RabbitMQ ------------------------------------------------------------------------------------
if ! port_open 5672; then
    command -v rabbitmq-server >/dev/null || die "nothing answers on 127.0.0.1:5672 and rabbitmq-server is not installed"
    log "starting rabbitmq-server"
    rabbitmq-server -detached
    wait_until 90 "RabbitMQ on 127.0.0.1:5672" port_open 5672
fi
log "rabbitmq answers on 127.0.0.1:5672"
