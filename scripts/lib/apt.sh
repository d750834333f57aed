# Sourced by the set-up scripts. `apt_install_missing PACKAGE...` installs those of the Debian packages
# that are not installed yet, and says so through the caller's `log`. Without systemd, package scripts
# must not try to start services (the set-up starts what it needs itself), so a policy-rc.d that
# forbids it is in place for the install when none exists.

apt_install_missing() {
    local -a missing=()
    local -A installed=()
    local name status
    while read -r name status; do
        [[ "$status" == "install ok installed" ]] && installed[$name]=1
    done < <(dpkg-query -W -f='${Package} ${Status}\n' "$@" 2>/dev/null || true)
    for name in "$@"; do
        [[ -n "${installed[$name]:-}" ]] || missing+=("$name")
    done
    if ((${#missing[@]} == 0)); then
        log "Debian packages present"
        return 0
    fi

    log "installing ${missing[*]}"
    local -a apt_options=(-q -o DPkg::Lock::Timeout=600)
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        created_policy=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    DEBIAN_FRONTEND=noninteractive apt-get "${apt_options[@]}" update >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get "${apt_options[@]}" install -y --no-install-recommends \
        "${missing[@]}" >/dev/null
    if ((created_policy)); then
        rm -f "$policy"
        trap - EXIT
    fi
}
