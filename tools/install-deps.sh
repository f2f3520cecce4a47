#!/bin/sh
# install-deps.sh -- installs what gpt2c needs to build and test, from Debian 12's
# packages: a C compiler, PCRE2 (tokenizer regex), jansson (JSON), libcurl and
# OpenSSL (hub downloads, SHA-256), libmicrohttpd (the HTTP server), cmocka (unit tests) and numpy (the reference
# implementation the tests compare against); clang and its libFuzzer runtime
# for the second compiler and the fuzz runs; Chromium, and Node.js unless the
# machine has it, for the server's browser page and OpenAI SDK tests; the
# AArch64 cross compiler, qemu-user and the arm64 builds of PCRE2, jansson and
# cmocka for the NEON kernels' tests (`make arm-test`).
set -e
PKGS="build-essential pkg-config libpcre2-dev libjansson-dev libcurl4-openssl-dev libssl-dev libcmocka-dev libmicrohttpd-dev python3-numpy clang libclang-rt-14-dev chromium"
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || PKGS="$PKGS nodejs npm"
ARM_PKGS="gcc-aarch64-linux-gnu qemu-user libc6-dev:arm64 libpcre2-dev:arm64 libjansson-dev:arm64 libcmocka-dev:arm64"
missing=""
for p in $PKGS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
arm_missing=""
for p in $ARM_PKGS; do
    dpkg -s "$p" >/dev/null 2>&1 || arm_missing="$arm_missing $p"
done
[ -z "$missing$arm_missing" ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
dpkg --print-foreign-architectures | grep -qx arm64 || $SUDO dpkg --add-architecture arm64
$SUDO apt-get update -qq || [ -z "$missing" ] # a mirror without arm64 indexes must not stop the rest
[ -z "$missing" ] || $SUDO apt-get install -y -qq --no-install-recommends $missing
# The AArch64 test stage is skipped, with a message, where these cannot be had.
[ -z "$arm_missing" ] || $SUDO apt-get install -y -qq --no-install-recommends $arm_missing ||
    echo "install-deps: the arm64 packages could not be installed; make check will skip arm-test" >&2
