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
if ! "$PYTHON" tests/make_reference.py "$GPT2C_REF_DIR"; then
    echo "FAILED: tests/make_reference.py (needs python3-numpy)"
    fail=$((fail + 1))
fi
for t in "$BUILD"/tests/test_*; do
    echo "=== $t"
    if "$t"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAILED: $t"; fi
done
echo "=== tests/test_cli.sh"
if PYTHON="$PYTHON" sh tests/test_cli.sh "$BUILD" "$GPT2C_REF_DIR"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAILED: tests/test_cli.sh"; fi
echo "=== tests/test_hub.py"
if "$PYTHON" tests/test_hub.py "$BUILD" "$GPT2C_REF_DIR"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAILED: tests/test_hub.py"; fi
echo "=== tests/test_convert.py"
if "$PYTHON" tests/test_convert.py "$BUILD" "$GPT2C_REF_DIR"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAILED: tests/test_convert.py"; fi
echo "=== tests/test_torchbin.py"
if "$PYTHON" tests/test_torchbin.py "$BUILD"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAILED: tests/test_torchbin.py"; fi
echo "=== tests/test_hostile_files.py"
if "$PYTHON" tests/test_hostile_files.py "$BUILD"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAILED: tests/test_hostile_files.py"; fi
echo "=== tests/test_train.py"
if "$PYTHON" tests/test_train.py "$BUILD" "$GPT2C_REF_DIR"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAILED: tests/test_train.py"; fi
echo "=== tests/test_server.py"
if "$PYTHON" tests/test_server.py "$BUILD" "$GPT2C_REF_DIR"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAILED: tests/test_server.py"; fi
echo "=== tests/test_python.py"
if "$PYTHON" tests/test_python.py "$BUILD" "$GPT2C_REF_DIR"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAILED: tests/test_python.py"; fi
echo "=== tests/test_nginx.py"
if "$PYTHON" tests/test_nginx.py "$BUILD" "$GPT2C_REF_DIR"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAILED: tests/test_nginx.py"; fi
echo "=== tests/test_install.sh"
if sh tests/test_install.sh "$BUILD" "$GPT2C_REF_DIR"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAILED: tests/test_install.sh"; fi
echo "=== tests/node: the official OpenAI Node SDK and the page in headless Chromium"
if { [ -d tests/node/node_modules ] || npm ci --prefix tests/node --no-audit --no-fund --silent; } &&
    node tests/node/sdk_test.mjs "$BUILD" "$GPT2C_REF_DIR/tiny-f32" &&
    node tests/node/page_test.mjs "$BUILD" "$GPT2C_REF_DIR/tiny-f32"; then
    pass=$((pass + 1))
else
    fail=$((fail + 1)); echo "FAILED: tests/node (needs node, npm and chromium: tools/install-deps.sh)"
fi
echo "suites: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
