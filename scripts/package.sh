#!/usr/bin/env bash
# Debian packages of smsrelay with cargo-deb: scripts/package.sh [amd64] [armhf] [arm64]
# (default: amd64). amd64 is built here with the rustup toolchain; armhf and arm64 package the
# binaries that scripts/cross-build.sh left in target/<triple>/release/ (run it first).
# The packages land in target/debian/. What goes in them is [package.metadata.deb] in
# Cargo.toml; the maintainer scripts are in scripts/debian/.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned so that a package built today and one built next year come from the same tool.
CARGO_DEB_VERSION=3.8.0

arches=("$@")
[ "${#arches[@]}" -gt 0 ] || arches=(amd64)

if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
    echo "==> installing cargo-deb $CARGO_DEB_VERSION (once; a few minutes)"
    cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
fi

target_dir=${CARGO_TARGET_DIR:-target}
# The packages declare `libc6 (>= $GLIBC_FLOOR)` (Cargo.toml); a binary that needs a newer glibc
# would install on a system where it cannot start.
GLIBC_FLOOR=2.34
check_glibc() { # binary
    local needed
    needed=$(readelf --dyn-syms -W "$1" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1)
    if [ "$(printf '%s\n%s\n' "$needed" "$GLIBC_FLOOR" | sort -V | tail -n1)" != "$GLIBC_FLOOR" ]; then
        echo "error: $1 needs glibc $needed, newer than the $GLIBC_FLOOR that Cargo.toml's" \
            "depends declares; raise both" >&2
        exit 1
    fi
}
built=()
for arch in "${arches[@]}"; do
    case "$arch" in
        amd64)
            echo "==> amd64: release build and package"
            cargo deb --locked
            check_glibc "$target_dir/release/smsrelay"
            ;;
        armhf | arm64)
            if [ "$arch" = armhf ]; then triple=armv7-unknown-linux-gnueabihf; else triple=aarch64-unknown-linux-gnu; fi
            binary="$target_dir/$triple/release/smsrelay"
            if [ ! -x "$binary" ]; then
                echo "error: $binary is missing; run scripts/cross-build.sh first" >&2
                exit 1
            fi
            echo "==> $arch: packaging $binary"
            check_glibc "$binary"
            # --no-strip: the release profile already stripped it, and the host's strip
            # cannot read ARM binaries.
            cargo deb --target "$triple" --no-build --no-strip
            ;;
        *)
            echo "error: unknown architecture $arch (amd64, armhf or arm64)" >&2
            exit 2
            ;;
    esac
    built+=("$arch")
done

echo
echo "==> packages"
for arch in "${built[@]}"; do
    for deb in "$target_dir"/debian/smsrelay_*_"$arch".deb; do
        [ -f "$deb" ] || continue
        printf '%s  %s bytes  %s\n' "$deb" "$(stat -c %s "$deb")" \
            "$(dpkg-deb -f "$deb" Depends)"
    done
done
