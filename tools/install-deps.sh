#!/bin/sh
# install-deps.sh -- installs what gpt2c needs to build and test, from Debian 12's
# packages: a C compiler, PCRE2 (tokenizer regex), jansson (JSON), libcurl and
# OpenSSL (hub downloads, SHA-256), libmicrohttpd (the HTTP server), cmocka (unit tests), numpy (the reference
# implementation the tests compare against) and torch (which writes the
# pytorch_model.bin files the .bin reader is tested on); venv (the Python
# package's test installs it with pip into a fresh virtual environment);
# help2man and man-db (`make install` makes the man pages from the help text;
# its test renders them); libsystemd (`gpt2c serve` reports readiness with
# sd_notify) and nginx (the scale-out test runs replicas behind it); clang and its libFuzzer runtime
# for the second compiler and the fuzz runs; Chromium and Node.js (Debian's 18
# will do; tests/node pins packages that run on it) for the server's browser
# page and OpenAI SDK tests; the AArch64 cross compiler, qemu-user and the
# arm64 builds of PCRE2, jansson and cmocka for the NEON kernels' tests
# (`make arm-test`, which builds the library without the hub).
#
# Packages are checked with their architecture, so a machine that also has the
# arm64 builds answers cleanly, and apt is called only for what is missing:
# with everything present this script changes nothing, needs no root, and
# exits 0.
set -e
PKGS="build-essential pkg-config libpcre2-dev libjansson-dev libutf8proc-dev libcurl4-openssl-dev libssl-dev libcmocka-dev libmicrohttpd-dev python3-numpy python3-torch python3-venv help2man man-db libsystemd-dev nginx clang libclang-rt-14-dev chromium"
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || PKGS="$PKGS nodejs npm"
ARM_PKGS="gcc-aarch64-linux-gnu qemu-user libc6-dev:arm64 libpcre2-dev:arm64 libjansson-dev:arm64 libutf8proc-dev:arm64 libcmocka-dev:arm64"
NATIVE=$(dpkg --print-architecture)

# installed PKG: 0 when PKG (NAME or NAME:ARCH; no suffix means this machine's
# architecture, or an architecture-independent package) is installed.
installed() {
    case $1 in
    *:*) q=$1 ;;
    *) q="$1:$NATIVE" ;;
    esac
    st=$(dpkg-query -W -f='${Status}' "$q" 2>/dev/null) || st=$(dpkg-query -W -f='${Status}' "${1%%:*}:all" 2>/dev/null) || st=
    [ "$st" = "install ok installed" ]
}

missing=""
for p in $PKGS; do installed "$p" || missing="$missing $p"; done
arm_missing=""
for p in $ARM_PKGS; do installed "$p" || arm_missing="$arm_missing $p"; done
if [ -z "$missing$arm_missing" ]; then
    echo "install-deps: every package is installed"
    exit 0
fi
echo "install-deps: installing:$missing$arm_missing"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
        echo "install-deps: these packages are missing and I am not root (and there is no sudo):$missing$arm_missing" >&2
        echo "install-deps: as root: apt-get install$missing$arm_missing" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
# Another apt or dpkg (unattended-upgrades on a new machine, say) holds the lock:
# apt waits for it this long, and says so, instead of failing at once.
APT="$SUDO apt-get -o DPkg::Lock::Timeout=600"
if [ -n "$arm_missing" ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
    $SUDO dpkg --add-architecture arm64
fi
$APT update -qq || [ -z "$missing" ] # a mirror without arm64 indexes must not stop the rest
[ -z "$missing" ] || $APT install -y -qq --no-install-recommends $missing
# nginx is here for the scale-out test, which runs its own instance: the
# system's web server that the package starts (where systemd runs) is stopped
# and disabled again, so installing the test tools opens no port 80.
case " $missing " in
*" nginx "*)
    if [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now nginx >/dev/null 2>&1 &&
            echo "install-deps: nginx is installed for the tests; its service is disabled (systemctl enable --now nginx to use it)"
    fi ;;
esac
# The AArch64 test stage is skipped, with a message, where these cannot be had.
[ -z "$arm_missing" ] || $APT install -y -qq --no-install-recommends $arm_missing ||
    echo "install-deps: the arm64 packages could not be installed; make check will skip arm-test" >&2
