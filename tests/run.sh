#!/bin/sh
# run.sh -- runs the whole test suite (called by `make test`): makes the numpy
# reference fixtures, runs every cmocka program and the CLI script, and ends with
# one summary line. Exits non-zero if anything failed.
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
# The reference fixtures do not depend on the build flavour: one copy serves all.
export GPT2C_REF_DIR="${GPT2C_REF_DIR:-build/ref}"
# Tokenizer images (src/tokenizer/image.c) go to the build's folder, not the
# user's cache: the suites' first load of each tokenizer parses and writes one,
# the later loads map it, so both paths run (test_tokenizer compares them).
case $BUILD in /*) cache="$BUILD/cache" ;; *) cache="$PWD/$BUILD/cache" ;; esac # tests change folders
export GPT2C_CACHE_DIR="${GPT2C_CACHE_DIR-$cache}"
pass=0
fail=0
# suite NAME COMMAND...: runs one suite, counts it, and prints its time, so
# that a slow CI run shows where the time went.
suite() {
    name=$1
    shift
    echo "=== $name"
    t0=$(date +%s)
    if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAILED: $name"; fi
    echo "--- $name: $(($(date +%s) - t0)) s"
}
node_suite() {
    { [ -d tests/node/node_modules ] || npm ci --prefix tests/node --no-audit --no-fund --silent; } &&
        node tests/node/sdk_test.mjs "$BUILD" "$GPT2C_REF_DIR/tiny-f32" &&
        node tests/node/page_test.mjs "$BUILD" "$GPT2C_REF_DIR/tiny-f32" ||
        { echo "(tests/node needs node, npm and chromium: tools/install-deps.sh)"; return 1; }
}
if ! "$PYTHON" tests/make_reference.py "$GPT2C_REF_DIR"; then
    echo "FAILED: tests/make_reference.py (needs python3-numpy)"
    fail=$((fail + 1))
fi
for t in "$BUILD"/tests/test_*; do
    suite "$t" "$t"
done
suite tests/test_cli.sh env PYTHON="$PYTHON" sh tests/test_cli.sh "$BUILD" "$GPT2C_REF_DIR"
# SUITES=native (make check's clang stage) leaves out the Python, install
# and browser suites: they drive the same binaries through the same paths and
# run under the gcc sanitizer build; again under clang they took 4.5 minutes.
if [ "${SUITES:-all}" != native ]; then
    for t in test_hub test_convert test_torchbin test_hostile_files test_train test_server test_python test_nginx; do
        case $t in
        test_torchbin | test_hostile_files) suite tests/$t.py "$PYTHON" tests/$t.py "$BUILD" ;;
        *) suite tests/$t.py "$PYTHON" tests/$t.py "$BUILD" "$GPT2C_REF_DIR" ;;
        esac
    done
    suite tests/test_install.sh sh tests/test_install.sh "$BUILD" "$GPT2C_REF_DIR"
    suite "tests/node: the official OpenAI Node SDK and the page in headless Chromium" node_suite
fi
echo "suites: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
