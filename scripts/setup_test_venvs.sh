#!/usr/bin/env bash
# Makes the two extra virtualenvs the test suite drives as separate programs, each with its own pinned
# dependencies so that their oslo/SQLAlchemy/openstacksdk pins never meet the project's:
#   .venv-keystone    a real Keystone (scripts/requirements/keystone.txt), started by the tests
#   .venv-openstack   the real `openstack` CLI (scripts/requirements/openstackclient.txt)
# Each is skipped when its stamp is newer than its requirements file, so a second run takes a moment.
#
# usage: scripts/setup_test_venvs.sh        environment: PYTHON (default python3)
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(dirname "$script_dir")

log() { printf 'setup_test_venvs: %s\n' "$*"; }

# make_venv NAME REQUIREMENTS PROGRAM: installs, then checks that `bin/PROGRAM --version` runs
make_venv() {
    local venv="$repo_root/$1" requirements="$script_dir/requirements/$2" program=$3
    local stamp="$venv/.requirements-installed"
    if [[ -f "$stamp" && "$stamp" -nt "$requirements" && -x "$venv/bin/$program" ]]; then
        log "$1 up to date"
        return
    fi
    if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
        log "creating $1"
        rm -rf "$venv"
        "${PYTHON:-python3}" -m venv "$venv"
    fi
    log "installing $(basename "$requirements") into $1"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" 2> >(grep -v '^WARNING: Location' >&2)
    "$venv/bin/$program" --version >/dev/null 2>&1 || { echo "setup_test_venvs: $1/bin/$program does not run" >&2; exit 1; }
    touch "$stamp"
}

make_venv .venv-keystone keystone.txt keystone-manage
make_venv .venv-openstack openstackclient.txt openstack
