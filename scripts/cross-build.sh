#!/usr/bin/env bash
# Docker-free cross build of smsrelay for the Raspberry Pi: armv7 (32-bit OS) and aarch64.
#
# rustup cannot download other targets' std here, and cross-rs needs Docker. Debian ships its
# own Rust (rustc-web, cargo-web) together with that exact compiler's std for every Debian
# architecture (libstd-rust-web-dev:<arch>), so this script builds with Debian's toolchain,
# unpacks the matching armhf/arm64 std into its sysroot, links with Debian's cross gcc and runs
# the results under qemu-user.
#
# Usage: scripts/cross-build.sh [--skip-tests] [--no-update] [TARGET...]
#   TARGET        armv7-unknown-linux-gnueabihf (or armv7), aarch64-unknown-linux-gnu (or
#                 aarch64); default both.
#   --skip-tests  build and run --version only.
#   --no-update   trust apt's current indexes (no apt-get update), for quick re-runs.
#   RUST_WEB_VERSION=<Debian version>  build with that rustc-web instead of the newest one
#                 offered for every architecture, e.g. to check the rust-version floor.
# Needs Debian 12 amd64 and root (or sudo). Honours CARGO_TARGET_DIR.
set -Eeuo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive

say() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
    printf 'ERROR: %s\n' "$*" >&2
    exit 1
}
# Setup steps have no useful fallback: name the command that stopped us rather than exit mutely.
trap 'printf "ERROR: line %s: \`%s\` failed\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

# apt-get and the sysroot need root: sudo when we are not root and have it; otherwise try as
# we are, so that root-only containers without sudo work and anything else fails with the
# command's own message.
as_root() {
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
        sudo env DEBIAN_FRONTEND=noninteractive "$@"
    else
        "$@"
    fi
}

usage() { sed -n '10,18s/^# \{0,1\}//p' "$0"; }

# Debian architecture, GNU triplet (cross gcc prefix and qemu's library root) and qemu-user
# binary of each Rust target.
declare -A DEB_ARCH=([armv7-unknown-linux-gnueabihf]=armhf [aarch64-unknown-linux-gnu]=arm64)
declare -A GNU=([armv7-unknown-linux-gnueabihf]=arm-linux-gnueabihf [aarch64-unknown-linux-gnu]=aarch64-linux-gnu)
declare -A QEMU=([armv7-unknown-linux-gnueabihf]=qemu-arm [aarch64-unknown-linux-gnu]=qemu-aarch64)

targets=()
skip_tests=0
no_update=0
for arg in "$@"; do
    case "$arg" in
    --skip-tests) skip_tests=1 ;;
    --no-update) no_update=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    armv7 | armv7-unknown-linux-gnueabihf) targets+=(armv7-unknown-linux-gnueabihf) ;;
    aarch64 | arm64 | aarch64-unknown-linux-gnu) targets+=(aarch64-unknown-linux-gnu) ;;
    *)
        usage >&2
        die "unknown argument or target: $arg"
        ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=(armv7-unknown-linux-gnueabihf aarch64-unknown-linux-gnu)
mapfile -t targets < <(printf '%s\n' "${targets[@]}" | awk '!seen[$0]++')

# Step timings and failures, for the summary.
step_names=()
step_secs=()
current_step=
step_started=0
step() {
    step_end
    current_step=$1
    step_started=$SECONDS
    say "$1"
}
step_end() {
    if [ -n "$current_step" ]; then
        step_names+=("$current_step")
        step_secs+=($((SECONDS - step_started)))
        current_step=
    fi
}
failures=()
fail() {
    failures+=("$1")
    printf 'FAILED: %s\n' "$1" >&2
}

# Setup ---------------------------------------------------------------------------------------

if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
    die "needs Debian's apt-get and dpkg (written for Debian 12 amd64)"
fi
host_arch=$(dpkg --print-architecture)
# The package choices below (cross gcc, foreign std) assume an amd64 build machine.
[ "$host_arch" = amd64 ] || die "written for an amd64 build machine; this one is $host_arch"
if ! grep -qs '^VERSION_ID="12"' /etc/os-release; then
    warn "not Debian 12: rustc-web and its foreign std may be named or versioned differently"
fi

step "Foreign architectures for the target std packages"
# apt only sees armhf/arm64 packages once dpkg knows those architectures. Nothing foreign gets
# installed through dpkg (see the std step), so multi-arch conflicts cannot arise.
added_arch=0
for t in "${targets[@]}"; do
    a=${DEB_ARCH[$t]}
    if dpkg --print-foreign-architectures | grep -qx "$a"; then
        note "$a: already known to dpkg"
    else
        note "$a: dpkg --add-architecture $a"
        as_root dpkg --add-architecture "$a"
        added_arch=1
    fi
done

apt_update_note="apt-get update: ok"
if [ "$no_update" = 1 ] && [ "$added_arch" = 0 ]; then
    step "apt-get update skipped (--no-update): using apt's current indexes"
    apt_update_note="apt-get update: skipped (--no-update)"
else
    step "apt-get update"
    # A foreign architecture's index can be briefly out of step with a mirror ("File has
    # unexpected size ... Mirror sync in progress?"): retry, then go on with what apt has.
    updated=0
    for attempt in 1 2 3; do
        if as_root apt-get update -qq; then
            updated=1
            break
        fi
        warn "apt-get update failed (attempt $attempt of 3)"
        [ "$attempt" = 3 ] || sleep $((attempt * 15))
    done
    if [ "$updated" = 0 ]; then
        apt_update_note="apt-get update: FAILED 3 times; used the indexes apt already had"
        warn "apt-get update kept failing; continuing with the package versions apt can see," \
            "which may be stale or missing for a foreign architecture"
    fi
fi

step "Choosing the rustc-web version"
# "package:arch version" for every binary package apt offers among the arguments. One call,
# since each apt-cache run loads the whole cache; foreign names come back arch-qualified.
offered() {
    apt-cache madison "$@" 2>/dev/null | awk -F'|' '$3 ~ /Packages/ {
        name = $1; ver = $2; gsub(/[ \t]/, "", name); gsub(/[ \t]/, "", ver); sub(/:.*/, "", name)
        n = split($3, w, " "); print name ":" w[n - 1], ver }'
}
newest_first() {
    local -a vs
    local i j tmp
    mapfile -t vs
    for ((i = 0; i < ${#vs[@]}; i++)); do
        for ((j = i + 1; j < ${#vs[@]}; j++)); do
            if dpkg --compare-versions "${vs[j]}" gt "${vs[i]}"; then
                tmp=${vs[i]}
                vs[i]=${vs[j]}
                vs[j]=$tmp
            fi
        done
    done
    [ ${#vs[@]} -eq 0 ] || printf '%s\n' "${vs[@]}"
}
# 1.96.0+dfsg1-1~deb12u2 -> 1.96, the suffix of the versioned libstd-rust-web-X.Y package.
rust_minor() { sed -E 's/^[0-9]+://; s/^([0-9]+\.[0-9]+)\..*/\1/' <<<"$1"; }
# Every package a build with version $1 needs, as package:arch.
needed_at() {
    local mm t
    mm=$(rust_minor "$1")
    echo rustc-web:amd64 cargo-web:amd64 libstd-rust-web-dev:amd64
    for t in "${targets[@]}"; do
        echo "libstd-rust-web-dev:${DEB_ARCH[$t]}" "libstd-rust-web-$mm:${DEB_ARCH[$t]}"
    done
}

newest_amd64=$(offered rustc-web:amd64 | cut -d' ' -f2 | newest_first | head -n1)
[ -n "$newest_amd64" ] || die "apt offers no rustc-web (is bookworm main in the apt sources?)"
if [ -n "${RUST_WEB_VERSION:-}" ]; then
    candidates=("$RUST_WEB_VERSION")
    note "RUST_WEB_VERSION=$RUST_WEB_VERSION requested"
else
    mapfile -t candidates < <(offered rustc-web:amd64 | cut -d' ' -f2 | newest_first)
fi
mapfile -t wanted < <(for v in "${candidates[@]}"; do needed_at "$v"; done | tr ' ' '\n' | sort -u)
offers=$(offered "${wanted[@]}")
V=
for v in "${candidates[@]}"; do
    missing=()
    for p in $(needed_at "$v"); do
        grep -qxF "$p $v" <<<"$offers" || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        V=$v
        break
    fi
    note "$v: not offered for ${missing[*]}"
done
[ -n "$V" ] || die "no rustc-web version is offered for amd64 and every target's architecture" \
    "(${targets[*]}); run apt-get update, or see the notes above"
RUST_MM=$(rust_minor "$V")
note "using $V (Rust $RUST_MM)"
if [ "$V" != "$newest_amd64" ] && [ -z "${RUST_WEB_VERSION:-}" ]; then
    warn "amd64 offers rustc-web $newest_amd64, but not every target architecture has its std;" \
        "falling back to $V, the newest version all of them offer"
fi

step "Host packages: rustc-web, cargo-web, cross gcc and libc, qemu-user"
is_installed() { # package [version]
    local got
    got=$(dpkg-query -W -f='${Status}|${Version}' "$1" 2>/dev/null) || return 1
    [ "${got%%|*}" = "install ok installed" ] || return 1
    [ -z "${2:-}" ] || [ "${got#*|}" = "$2" ]
}
want=()
for p in rustc-web cargo-web libstd-rust-web-dev; do
    if is_installed "$p" "$V"; then note "$p $V: installed"; else want+=("$p=$V"); fi
done
# The cross libc headers are only a Recommends of the cross gcc, and ring's C needs them.
for p in qemu-user $(for t in "${targets[@]}"; do echo "gcc-${GNU[$t]} libc6-dev-${DEB_ARCH[$t]}-cross"; done); do
    if is_installed "$p"; then note "$p: installed"; else want+=("$p"); fi
done
if [ ${#want[@]} -gt 0 ]; then
    note "apt-get install ${want[*]}"
    # No recommends: qemu-user's would register binfmt handlers system-wide, which we do not
    # need; what the cross gcc recommends is listed above.
    # Downgrades are allowed because $V may be pinned or older than what is installed.
    as_root apt-get install -y -q --no-install-recommends --allow-downgrades "${want[@]}"
fi

RUSTC=/usr/bin/rustc
CARGO_BIN=/usr/bin/cargo
if [ ! -x "$RUSTC" ] || [ ! -x "$CARGO_BIN" ]; then
    die "rustc-web/cargo-web did not install $RUSTC and $CARGO_BIN"
fi
rustc_version=$("$RUSTC" -V)
cargo_version=$("$CARGO_BIN" -V)
case "$rustc_version" in
"rustc ${V%%+*}"*) ;;
*) die "$RUSTC is '$rustc_version', expected Rust ${V%%+*} from rustc-web $V" ;;
esac
SYSROOT=$("$RUSTC" --print sysroot)

step "Target std for $RUST_MM in $SYSROOT/lib/rustlib"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# apt-get download drops to the _apt user, who must reach the download directory inside.
chmod 755 "$tmp"
# rustc itself is the judge: a std that is missing or from another build of the compiler makes
# this fail, so an upgraded rustc-web gets its std replaced on the next run.
std_works() {
    printf '' | "$RUSTC" --target "$1" --crate-type lib --crate-name probe --emit metadata \
        --out-dir "$tmp" - >"$tmp/probe.log" 2>&1
}
for t in "${targets[@]}"; do
    a=${DEB_ARCH[$t]}
    if std_works "$t"; then
        note "$t: present and accepted by rustc"
        continue
    fi
    note "$t: $(grep -m1 -i 'error' "$tmp/probe.log" || echo 'rejected by rustc')"
    note "$t: apt-get download libstd-rust-web-dev:$a=$V libstd-rust-web-$RUST_MM:$a=$V"
    # Downloaded and unpacked rather than installed: installing libstd-rust-web-dev:$a would
    # pull in a foreign rustc_driver and its dependencies and can hit multi-arch conflicts.
    dl="$tmp/deb-$a"
    mkdir -p "$dl"
    # Writable for _apt, or apt downloads unsandboxed as root and warns about it.
    if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then chown _apt "$dl"; fi
    (cd "$dl" && apt-get download -q "libstd-rust-web-dev:$a=$V" "libstd-rust-web-$RUST_MM:$a=$V")
    for deb in "$dl"/*.deb; do dpkg -x "$deb" "$dl/root"; done
    src="$dl/root/usr/lib/rustlib/$t"
    [ -d "$src" ] || die "libstd-rust-web-dev:$a has no usr/lib/rustlib/$t; it has:" \
        "$(find "$dl/root/usr/lib/rustlib" -mindepth 1 -maxdepth 1 -printf '%f ' 2>/dev/null)"
    dest="$SYSROOT/lib/rustlib/$t"
    if [ -e "$dest" ]; then
        # Only replace what an earlier run unpacked; a directory dpkg owns is not ours to delete.
        if dpkg -S "$dest" >/dev/null 2>&1; then
            die "$dest belongs to $(dpkg -S "$dest" 2>/dev/null | cut -d: -f1-2) but rustc rejects it: $(cat "$tmp/probe.log")"
        fi
        note "$t: replacing the std an earlier run unpacked"
        as_root rm -rf "$dest"
    fi
    as_root cp -r "$src" "$dest"
    std_works "$t" || die "rustc still rejects the std for $t: $(cat "$tmp/probe.log")"
    note "$t: unpacked into $dest"
done

# Build and check ------------------------------------------------------------------------------

# Debian's cargo and rustc, first on PATH, so that neither cargo nor a build script reaches the
# rustup proxies in ~/.cargo/bin, whose toolchain has no ARM std. RUSTUP_TOOLCHAIN would only
# matter to those proxies; dropping it keeps a caller's override from leaking into messages.
cargo_cmd=(env -u RUSTUP_TOOLCHAIN PATH="/usr/bin:$PATH" RUSTC="$RUSTC" RUSTDOC=/usr/bin/rustdoc)
for t in "${targets[@]}"; do
    u=${t//-/_}
    # The cc crate (ring's C and assembly, for rustls) would otherwise guess the compiler.
    cargo_cmd+=("CC_$u=${GNU[$t]}-gcc" "AR_$u=${GNU[$t]}-ar")
    # Test binaries and `cargo run` go through qemu-user with the cross glibc as library root.
    cargo_cmd+=("CARGO_TARGET_${u^^}_RUNNER=${QEMU[$t]} -L /usr/${GNU[$t]}")
done
cargo_cmd+=("$CARGO_BIN")

say "Toolchain: $rustc_version ($RUSTC, from rustc-web $V); $cargo_version ($CARGO_BIN)"
target_dir=$("${cargo_cmd[@]}" metadata --format-version 1 --no-deps --locked |
    grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
[ -n "$target_dir" ] || die "cargo metadata did not name a target directory"
log_dir="$target_dir/cross-build"
mkdir -p "$log_dir"
note "target directory: $target_dir (logs in $log_dir)"

# A binfmt_misc handler lets an emulated process exec another ARM binary; without one, tests
# that spawn the smsrelay binary fail with "Exec format error" for reasons unrelated to ARM.
binfmt_enabled() { grep -qs '^enabled' "/proc/sys/fs/binfmt_misc/$1"; }
# serialport sets the baud rate with the termios2 ioctls (TCGETS2/TCSETS2), which qemu-user
# only emulates in recent releases (Debian 12's 7.2 answers ENOSYS), so a test that opens the
# mock modem's PTY as a serial port fails there although a Pi's kernel has them. Ask this qemu.
qemu_has_termios2() { # target
    local t=$1 probe="$tmp/termios2-$1"
    cat >"$probe.c" <<'C'
#define _XOPEN_SOURCE 600
#include <fcntl.h>
#include <stdlib.h>
#include <asm/termbits.h>
#include <asm/ioctls.h>
int ioctl(int fd, unsigned long request, ...);
int main(void) {
    struct termios2 t;
    int fd = posix_openpt(O_RDWR | O_NOCTTY);
    return fd >= 0 && ioctl(fd, TCGETS2, &t) == 0 ? 0 : 1;
}
C
    "${GNU[$t]}-gcc" -O -o "$probe" "$probe.c" &&
        timeout 60 "${QEMU[$t]}" -L "/usr/${GNU[$t]}" "$probe"
}

declare -A r_size r_file r_version r_glibc r_tests r_skipped r_status
# Runs the tests of one cargo test target (--lib or --test main) whose names match $3 and not
# $4, listing them first so that the filter is exact: libtest's own filter matches substrings,
# and "at_" is inside "format_".
run_tests() { # target label include-regex exclude-regex cargo-test-args...
    local t=$1 label=$2 include=$3 exclude=$4 log list status result passed failed
    shift 4
    log="$log_dir/$t-$label.log"
    local -a names
    if ! list=$("${cargo_cmd[@]}" test --locked --target "$t" "$@" -- --list --format terse); then
        fail "$t: $label tests did not build or list"
        r_tests[$t]+="$label: did not build; "
        return
    fi
    mapfile -t names < <(awk -v inc="$include" -v exc="$exclude" \
        'sub(/: test$/, "") && $0 ~ inc && (exc == "" || $0 !~ exc)' <<<"$list")
    if [ ${#names[@]} -eq 0 ]; then
        fail "$t: no $label tests matched $include"
        r_tests[$t]+="$label: none matched; "
        return
    fi
    note "$t: running ${#names[@]} $label tests under ${QEMU[$t]} (log: $log)"
    status=0
    "${cargo_cmd[@]}" test --locked --target "$t" "$@" -- --exact "${names[@]}" >"$log" 2>&1 || status=$?
    result=$(grep -E '^test result:' "$log" | tail -n1 || true)
    passed=$(sed -nE 's/.* ([0-9]+) passed.*/\1/p' <<<"$result")
    failed=$(sed -nE 's/.* ([0-9]+) failed.*/\1/p' <<<"$result")
    note "$t: $label: ${result:-no test result line}"
    if [ "$status" -ne 0 ]; then
        fail "$t: $label tests (${failed:-?} failed, exit $status)"
        # The failures section carries each failing test's output; without one (a crash, say),
        # the end of the log is what there is.
        if grep -q '^failures:' "$log"; then
            sed -n '/^failures:/,$p' "$log"
        else
            tail -n 60 "$log"
        fi
    fi
    r_tests[$t]+="$label: ${passed:-0} passed, ${failed:-?} failed; "
}

for t in "${targets[@]}"; do
    r_status[$t]=PASS
    before=${#failures[@]}
    bin="$target_dir/$t/release/smsrelay"

    step "$t: cargo build --release --locked --target $t"
    if "${cargo_cmd[@]}" build --release --locked --target "$t"; then
        r_size[$t]=$(stat -c %s "$bin")
        note "$bin: ${r_size[$t]} bytes"
        if command -v file >/dev/null; then r_file[$t]=$(file -b "$bin"); fi
        # The newest glibc symbol version it needs is the oldest Pi OS it runs on.
        if command -v "${GNU[$t]}-objdump" >/dev/null; then
            r_glibc[$t]=$("${GNU[$t]}-objdump" -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n1 || true)
        fi

        step "$t: smsrelay --version under ${QEMU[$t]}"
        if r_version[$t]=$(timeout 120 "${QEMU[$t]}" -L "/usr/${GNU[$t]}" "$bin" --version 2>&1); then
            note "${r_version[$t]}"
        else
            fail "$t: $bin --version under ${QEMU[$t]}: ${r_version[$t]}"
        fi
    else
        fail "$t: release build"
    fi

    if [ "$skip_tests" = 1 ]; then
        r_tests[$t]="skipped (--skip-tests)"
    else
        step "$t: library tests of at:: and pdu:: under ${QEMU[$t]}"
        run_tests "$t" lib '^(at|pdu)::' '' --lib

        step "$t: integration tests at_*, pdu_* (tests/main.rs) under ${QEMU[$t]}"
        # Tests that cannot work under this emulator are left out by name, and the summary
        # says so; anything else that fails is a failure.
        skip=()
        if ! binfmt_enabled "${QEMU[$t]}"; then
            skip+=(pdu_cli)
            note "$t: leaving out pdu_cli:: (it runs the ARM smsrelay binary as a child, which" \
                "needs a binfmt_misc handler for ${QEMU[$t]}; this machine has none)"
        fi
        if ! qemu_has_termios2 "$t"; then
            skip+=(at_against_mock)
            note "$t: leaving out at_against_mock:: (it opens a PTY as a serial port, whose baud" \
                "rate serialport sets with the termios2 ioctls, and $(${QEMU[$t]} --version |
                    head -n1) does not emulate them)"
        fi
        exclude=
        if [ ${#skip[@]} -gt 0 ]; then
            exclude="^($(IFS='|'; echo "${skip[*]}"))::"
            r_skipped[$t]="${skip[*]/%/::} (emulator limits, see above)"
        fi
        run_tests "$t" integration '^(at|pdu)_[a-z_]*::' "$exclude" --test main
    fi
    [ ${#failures[@]} -eq "$before" ] || r_status[$t]=FAIL
done
step_end

# Summary --------------------------------------------------------------------------------------

echo
say "Summary"
note "$apt_update_note"
note "toolchain: $rustc_version, $cargo_version (rustc-web $V, Debian's, not rustup's)"
for t in "${targets[@]}"; do
    echo "  $t: ${r_status[$t]}"
    note "binary:   $target_dir/$t/release/smsrelay"
    if [ -n "${r_size[$t]:-}" ]; then
        note "size:     ${r_size[$t]} bytes ($(awk -v b="${r_size[$t]}" 'BEGIN { printf "%.2f MiB, %.2f MB", b / 1048576, b / 1000000 }'), stripped by the release profile)"
    fi
    [ -z "${r_file[$t]:-}" ] || note "file:     ${r_file[$t]}"
    [ -z "${r_glibc[$t]:-}" ] || note "needs:    ${r_glibc[$t]} or newer on the device"
    note "version:  ${r_version[$t]:-(not run)}"
    note "tests:    ${r_tests[$t]:-(not run)}"
    [ -z "${r_skipped[$t]:-}" ] || note "left out: ${r_skipped[$t]}"
done
note "step times:"
for i in "${!step_names[@]}"; do
    printf '      %5ss  %s\n' "${step_secs[$i]}" "${step_names[$i]}"
done
if [ ${#failures[@]} -gt 0 ]; then
    echo "FAIL: ${#failures[@]} failed:"
    printf '  - %s\n' "${failures[@]}"
    exit 1
fi
echo "PASS: ${targets[*]}"
