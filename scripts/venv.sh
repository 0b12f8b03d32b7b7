# shellcheck shell=bash
# Sourced by the other scripts: a Python virtualenv with the pinned tools of
# .ci/requirements.txt (the AWS stand-in moto, boto3, the chart and image checkers), created once
# and reused while the pins are unchanged.
#
#   ensure_venv                   everything in .ci/requirements.txt (test.sh, chart-check.sh)
#   ensure_venv_only moto boto3   only those packages, at their pinned versions, into the same
#                                 venv (demo.sh: the demo needs the AWS stand-in, not the checkers)
# (Two functions rather than optional arguments: shellcheck flags every argument-less call of a
# function that reads its arguments.)
VENV="${SECRET_FERRY_VENV:-$HOME/.cache/secret-ferry-venv}"
REQ="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.ci/requirements.txt"

ensure_venv() {
    local stamp
    stamp="$VENV/.req-$(sha256sum "$REQ" | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        echo "installing the test stand-ins ($(tr '\n' ' ' < "$REQ")) into $VENV ..." >&2
        rm -rf "$VENV"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ"
        touch "$stamp"
    fi
    export MOTO_SERVER="$VENV/bin/moto_server"
}

ensure_venv_only() {
    if [ $# -eq 0 ]; then
        echo "ensure_venv_only: name the packages (or use ensure_venv for all of them)" >&2
        return 1
    fi
    _ensure_venv_subset "$@" || return
    export MOTO_SERVER="$VENV/bin/moto_server"
}

# The pinned lines of the named packages (each must be in .ci/requirements.txt). Done when the
# full install of the current pins is there; otherwise every line not installed before (a stamp
# per line, so a changed pin is installed again) goes into the venv, which is created first if it
# has no stamp at all (missing, or never completed). A later `ensure_venv` still rebuilds the
# venv with everything, as it always has.
_ensure_venv_subset() {
    local name want line
    local -a lines=() missing=()
    for name in "$@"; do
        want="$(printf '%s' "$name" | tr 'A-Z_' 'a-z-')"
        # A requirement's name ends at its extras, version specifier, marker or whitespace.
        line="$(awk -v want="$want" '{ n = tolower($0); sub(/[][=<>!~;, \t].*/, "", n); gsub(/_/, "-", n)
                                        if (n == want) { print; exit } }' "$REQ")"
        if [ -z "$line" ]; then
            echo "ensure_venv_only: no '$name' in $REQ" >&2
            return 1
        fi
        lines+=("$line")
    done
    if [ -f "$VENV/.req-$(sha256sum "$REQ" | cut -c1-16)" ]; then
        return 0
    fi
    for line in "${lines[@]}"; do
        [ -f "$VENV/.req-line-$(_venv_line_hash "$line")" ] || missing+=("$line")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        return 0
    fi
    echo "installing ${missing[*]} (pinned in .ci/requirements.txt) into $VENV ..." >&2
    # Called from `ensure_venv_only ... || return`, where `set -e` does not apply: every step checks.
    if ! compgen -G "$VENV/.req-*" > /dev/null; then
        rm -rf "$VENV" && python3 -m venv "$VENV" || return 1
    fi
    "$VENV/bin/pip" install -q --disable-pip-version-check "${missing[@]}" || return 1
    for line in "${missing[@]}"; do
        touch "$VENV/.req-line-$(_venv_line_hash "$line")" || return 1
    done
}

_venv_line_hash() {
    printf '%s' "$1" | sha256sum | cut -c1-16
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
