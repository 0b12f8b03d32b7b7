#!/usr/bin/env bash
# Builds the container image localhost/secret-ferry:<crate version> (and :latest) with podman,
# offline: from the Dockerfile's runtime stage, the release binary of this checkout and a
# runtime base assembled from Debian packages. The documented, online way stays
# `docker build -t secret-ferry:<version> .` (README, "Build the image"); this script is for
# machines that cannot pull images, like CI here.
#
#   scripts/image.sh                 build the release binary and the image, then run --version in it
#   scripts/image.sh --binary PATH   use this binary instead of building one (same glibc: Debian 12)
#   scripts/image.sh --rebuild-base  assemble the base image again from freshly downloaded packages
#   scripts/image.sh --wrapper       always run containers through the rlimit wrapper (below)
#   scripts/image.sh --no-wrapper    never use it: fail if plain podman cannot run a container
#
# What it does:
# 1. Installs podman and runc (Debian packages) when they are missing.
# 2. Makes the base image the Dockerfile's runtime `FROM` names (gcr.io/distroless/cc-debian12:nonroot)
#    when podman does not have it: glibc and libgcc from Debian 12's packages (the same glibc the
#    Dockerfile's builder links against), the CA bundle from Debian's ca-certificates, and
#    distroless's user 65532 "nonroot", /tmp and /home/nonroot. A pulled distroless image, when
#    podman already has one, is used as is.
# 3. Builds the Dockerfile with BINARY_FROM=prebuilt: the runtime stage is the Dockerfile's own
#    (user, ENV, entrypoint, CMD, port); only the binary comes from the build context instead of
#    the Dockerfile's rust builder stage, which needs a registry.
# 4. Runs `secret-ferry --version` in the image. Where the machine refuses rlimits (no
#    CAP_SYS_RESOURCE: "setrlimit RLIMIT_NOFILE: Operation not permitted" — sandboxes such as this
#    CI), podman cannot start any container, because it always writes rlimits into the OCI spec.
#    Only then does the script write an OCI-runtime wrapper that deletes process.rlimits from
#    the bundle and runs runc, and says to run podman with `--runtime <wrapper>`. An ordinary
#    machine never needs it, and the script does not write it there.
#
# The podman options that containers need on this machine (empty, or `--runtime <wrapper>`) are
# written to $STATE/podman-args, where scripts/test.sh reads them.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE="${SECRET_FERRY_STATE:-$HOME/.cache/secret-ferry}"
WORK="$STATE/image"
WRAPPER="$STATE/oci-runtime-norlimits"
BASE="gcr.io/distroless/cc-debian12:nonroot"
VERSION="$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)"
IMAGE="localhost/secret-ferry"

binary="" rebuild_base=0 wrapper=auto
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
        --rebuild-base) rebuild_base=1; shift ;;
        --wrapper) wrapper=yes; shift ;;
        --no-wrapper) wrapper=no; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "image.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

say() { echo "image.sh: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# 1. podman, runc, and catatonit (the pause process of every pod `podman kube play` starts; only
# a recommended package of podman, so --no-install-recommends leaves it out)
has_catatonit() { command -v catatonit >/dev/null || [ -x /usr/libexec/podman/catatonit ]; }
if ! command -v podman >/dev/null || { ! command -v runc >/dev/null && ! [ -x /usr/sbin/runc ]; } || ! has_catatonit; then
    say "installing podman, runc and catatonit (Debian packages)"
    mkdir -p "$WORK"
    as_root apt-get update -qq >"$WORK/apt.log" 2>&1 || true
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        podman runc catatonit uidmap slirp4netns fuse-overlayfs >>"$WORK/apt.log" 2>&1; then
        say "apt-get install podman runc failed; its log: $WORK/apt.log"
        exit 1
    fi
fi
RUNC="$(command -v runc || echo /usr/sbin/runc)"

# 2. the runtime base
if [ "$rebuild_base" = 1 ] || ! podman image exists "$BASE"; then
    say "assembling $BASE from Debian 12 packages (libc6, libgcc-s1, ca-certificates)"
    rm -rf "$WORK/debs" "$WORK/unpacked" "$WORK/rootfs"
    mkdir -p "$WORK/debs" "$WORK/unpacked" "$WORK/rootfs"
    (cd "$WORK/debs" && apt-get download libc6 libgcc-s1 ca-certificates >"$WORK/download.log" 2>&1) || {
        say "apt-get download failed; its log: $WORK/download.log"; exit 1; }
    for deb in "$WORK"/debs/*.deb; do dpkg-deb -x "$deb" "$WORK/unpacked"; done
    R="$WORK/rootfs" U="$WORK/unpacked"
    mkdir -p "$R/lib/x86_64-linux-gnu" "$R/lib64" "$R/etc/ssl/certs" "$R/tmp" "$R/home/nonroot" "$R/root" \
        "$R/usr/local/bin" "$R/usr/share/doc"
    # Only what a glibc Rust binary loads: the loader, libc, libm and libgcc_s. Debian 12 is
    # merged-/usr, so the libraries live under usr/lib in the packages.
    for lib in ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libgcc_s.so.1; do
        src="$(find "$U" -name "$lib" \( -type f -o -type l \) | head -n1)"
        [ -n "$src" ] || { say "$lib is not in the downloaded packages"; exit 1; }
        cp -L "$src" "$R/lib/x86_64-linux-gnu/$lib"
    done
    ln -sf /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$R/lib64/ld-linux-x86-64.so.2"
    # What update-ca-certificates would build from the package's Mozilla bundle.
    cat "$U"/usr/share/ca-certificates/mozilla/*.crt >"$R/etc/ssl/certs/ca-certificates.crt"
    # The packages' licences, as distroless keeps them; nothing else of their docs.
    for pkg in libc6 libgcc-s1 ca-certificates; do
        mkdir -p "$R/usr/share/doc/$pkg"
        cp "$U/usr/share/doc/$pkg/copyright" "$R/usr/share/doc/$pkg/" 2>/dev/null || true
    done
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$R/etc/passwd"
    printf 'root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n' >"$R/etc/group"
    printf 'hosts: files dns\n' >"$R/etc/nsswitch.conf"
    cp /etc/os-release "$R/etc/os-release" 2>/dev/null || true
    chmod 1777 "$R/tmp"
    chmod 0700 "$R/root"
    chown 65532:65532 "$R/home/nonroot"
    tar --numeric-owner -C "$R" -cf "$WORK/rootfs.tar" .
    # The image settings distroless's nonroot variant has.
    podman import --quiet \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
        --change 'USER 65532' --change 'WORKDIR /home/nonroot' \
        "$WORK/rootfs.tar" "$BASE" >/dev/null
fi

# 3. the binary and the image
if [ -z "$binary" ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$STATE/target}"
    say "building the release binary (cargo build --release --locked)"
    cargo build --release --locked --quiet
    binary="$CARGO_TARGET_DIR/release/secret-ferry"
fi
[ -x "$binary" ] || { say "$binary is not an executable file"; exit 1; }
# Every shared library the binary needs must be in the base (no ldd: the base has no shell).
# A pulled distroless base has them all; the assembled one is checked against its file list.
missing=""
if [ -f "$WORK/rootfs.tar" ]; then
    listing="$(tar -tf "$WORK/rootfs.tar")"
    for lib in $(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        grep -q "x86_64-linux-gnu/$lib\$" <<<"$listing" || missing="$missing $lib"
    done
fi
if [ -n "$missing" ]; then
    say "the base lacks$missing, which $binary needs: run with --rebuild-base"
    exit 1
fi
cp "$binary" "$WORK/secret-ferry.next"
rm -rf "$WORK/context"
mkdir -p "$WORK/context"
mv "$WORK/secret-ferry.next" "$WORK/context/secret-ferry"
say "building $IMAGE:$VERSION"
previous="$(podman image inspect --format '{{.Id}}' "$IMAGE:$VERSION" 2>/dev/null || true)"
dangling_before="$(podman images --quiet --no-trunc --filter dangling=true)"
podman build --quiet --pull=never --build-arg BINARY_FROM=prebuilt \
    -f "$PWD/Dockerfile" -t "$IMAGE:$VERSION" -t "$IMAGE:latest" "$WORK/context" >/dev/null
# The image this one replaces, if nothing else names it, and the untagged image of the
# `prebuilt` stage would only take disk space.
for id in $(podman images --quiet --no-trunc --filter dangling=true); do
    grep -qx "$id" <<<"$dangling_before" || podman rmi --force "$id" >/dev/null 2>&1 || true
done
if [ -n "$previous" ] && [ "$(podman image inspect --format '{{len .RepoTags}}' "$previous" 2>/dev/null)" = 0 ]; then
    podman rmi --force "$previous" >/dev/null 2>&1 || true
fi

# 4. run it: plain podman first, the rlimit wrapper only where plain podman cannot start a container
write_wrapper() {
    cat >"$WRAPPER" <<EOF
#!/usr/bin/env python3
# OCI-runtime wrapper written by secret-ferry's scripts/image.sh, only on a machine that refuses
# rlimits (no CAP_SYS_RESOURCE: "setrlimit RLIMIT_NOFILE: Operation not permitted"), where podman
# always writes process.rlimits into the OCI spec and so cannot start any container. On "create"
# and "run" it deletes them from the bundle's config.json (on "exec", from the process file),
# then runs $RUNC with the same arguments. Use: podman --runtime $WRAPPER run ...  An ordinary machine does not need it.
import json, os, sys
RUNC = "$RUNC"
args = sys.argv[1:]
# runc's global options that take a value come before the command.
VALUED = {"--root", "--log", "--log-format", "--criu", "--rootless"}
i = 0
while i < len(args) and args[i].startswith("-"):
    i += 2 if args[i] in VALUED else 1
def strip(path, process_only):
    with open(path) as f:
        spec = json.load(f)
    process = spec if process_only else spec.get("process", {})
    if process.pop("rlimits", None) is not None:
        with open(path + ".tmp", "w") as f:
            json.dump(spec, f)
        os.replace(path + ".tmp", path)
def value(rest, *names):
    for j, a in enumerate(rest):
        if a in names and j + 1 < len(rest):
            return rest[j + 1]
        for n in names:
            if a.startswith(n + "="):
                return a.split("=", 1)[1]
    return None
if i < len(args) and args[i] in ("create", "run"):
    strip(os.path.join(value(args[i + 1:], "--bundle", "-b") or ".", "config.json"), False)
elif i < len(args) and args[i] == "exec":
    # podman exec hands runc the process (with its rlimits) as a separate JSON file.
    process = value(args[i + 1:], "--process", "-p")
    if process:
        strip(process, True)
os.execv(RUNC, [RUNC] + args)
EOF
    chmod 0755 "$WRAPPER"
}
run_version() { podman "$@" run --rm --pull=never --network none --read-only "$IMAGE:$VERSION" --version; }

args=()
if [ "$wrapper" = yes ]; then
    write_wrapper
    args=(--runtime "$WRAPPER")
    version_line="$(run_version "${args[@]}")"
elif ! version_line="$(run_version 2>&1)"; then
    if [ "$wrapper" = auto ] && grep -qiE 'rlimit' <<<"$version_line"; then
        say "this machine refuses rlimits, so plain podman cannot start containers; using the wrapper $WRAPPER"
        write_wrapper
        args=(--runtime "$WRAPPER")
        version_line="$(run_version "${args[@]}")"
    else
        say "podman cannot run the image: $version_line"
        exit 1
    fi
fi
printf '%s\n' "${args[*]}" >"$STATE/podman-args"
# Sizes: as stored (uncompressed) and as a registry would hold it (gzip-compressed layers).
size="$(podman image inspect --format '{{.Size}}' "$IMAGE:$VERSION")"
rm -rf "$WORK/oci"
podman save --quiet --compress --format docker-dir -o "$WORK/oci" "$IMAGE:$VERSION"
compressed="$(python3 - "$WORK/oci" <<'PY'
import json, sys, pathlib
d = pathlib.Path(sys.argv[1])
manifest = json.loads((d / "manifest.json").read_text())
print(" + ".join(str(l["size"]) for l in manifest["layers"]), "=", sum(l["size"] for l in manifest["layers"]))
PY
)"
rm -rf "$WORK/oci"
say "built $IMAGE:$VERSION and $IMAGE:latest: $size bytes uncompressed, compressed layers $compressed bytes, binary $(stat -c %s "$binary") bytes; it prints: $version_line"
if [ ${#args[@]} -gt 0 ]; then
    say "run containers here with: podman ${args[*]} run ..."
fi
