# Sourced by the other scripts: a Python virtualenv with the pinned AWS stand-in (moto)
# and boto3, created once and reused while .ci/requirements.txt is unchanged.
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

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
