#!/bin/sh
# test_install.sh BUILD_DIR REF_DIR -- `make install` and `make uninstall` into temporary
# prefixes: every file in its GNU place; a program outside the tree built with
# `pkg-config --cflags --libs gpt2c` against the installed library runs and prints what the
# installed gpt2c does; `man -l` renders every page; the bash completion completes; DESTDIR
# stages under its root with the final prefix in gpt2c.pc; uninstall leaves nothing.
# Prints "install: N passed, N failed". Runs on the plain build: a sanitizer build's library
# wants its runtime loaded first, which a program built as a user would build it has not.
BUILD=$1
REF=$2
pass=0
fail=0
check() { # check CONDITION-STATUS MESSAGE
    if [ "$1" -eq 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $2"; fi
}
if ldd "$BUILD/libgpt2c.so" | grep -q libasan || nm -D --undefined-only "$BUILD/libgpt2c.so" | grep -q __asan_init; then
    echo "install: skipped in the sanitizer build $BUILD (the plain build runs it)"
    exit 0
fi
for tool in help2man man pkg-config; do
    command -v $tool >/dev/null || { echo "FAIL: $tool is missing (tools/install-deps.sh installs it)"; exit 1; }
done
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
P=$TMP/prefix
make -s BUILD="$BUILD" PREFIX="$P" install >"$TMP/log" 2>&1
check $? "make install PREFIX=$P ($(tail -3 "$TMP/log"))"
missing=
for f in bin/gpt2c lib/libgpt2c.so lib/libgpt2c.so.0 lib/libgpt2c.a include/gpt2c.h lib/pkgconfig/gpt2c.pc \
    share/man/man1/gpt2c.1 share/man/man1/gpt2c-generate.1 share/man/man1/gpt2c-serve.1 \
    share/bash-completion/completions/gpt2c; do
    [ -e "$P/$f" ] || missing="$missing $f"
done
check "$([ -z "$missing" ]; echo $?)" "installed files missing:$missing"
[ "$(readlink "$P/lib/libgpt2c.so.0")" = "$(readlink "$P/lib/libgpt2c.so")" ] && [ -f "$P/lib/$(readlink "$P/lib/libgpt2c.so")" ]
check $? "libgpt2c.so and libgpt2c.so.0 link to the versioned library"
objdump -p "$P/lib/libgpt2c.so" | grep -q 'SONAME *libgpt2c.so.0'
check $? "the installed library's SONAME is libgpt2c.so.0"

# A user's program, outside the tree, built through pkg-config.
mkdir "$TMP/user"
cp examples/generate.c "$TMP/user/"
export PKG_CONFIG_PATH="$P/lib/pkgconfig"
(cd "$TMP/user" && cc -o generate generate.c $(pkg-config --cflags --libs gpt2c)) 2>"$TMP/cc.log"
check $? "cc generate.c \$(pkg-config --cflags --libs gpt2c) ($(cat "$TMP/cc.log"))"
[ "$(pkg-config --modversion gpt2c)" = "$(sed -n 's/^#define GPT2C_VERSION "\(.*\)"/\1/p' include/gpt2c.h)" ]
check $? "pkg-config --modversion gpt2c is the header's version"
LD_LIBRARY_PATH="$P/lib" ldd "$TMP/user/generate" | grep -q "libgpt2c.so.0 => $P/lib/libgpt2c.so.0"
check $? "the program loads the installed libgpt2c.so.0"
got=$(LD_LIBRARY_PATH="$P/lib" "$TMP/user/generate" "$REF/tiny-f32" "Hello, I'm a language model," 8 2>/dev/null)
want=$("$P/bin/gpt2c" generate -m "$REF/tiny-f32" -p "Hello, I'm a language model," -n 8 2>/dev/null)
check "$([ -n "$got" ] && [ "$got" = "$want" ]; echo $?)" "the program prints what the installed gpt2c generates ('$got' vs '$want')"

# Every man page renders, and says its name.
bad=
for page in "$P"/share/man/man1/*.1; do
    name=$(basename "$page" .1)
    MANWIDTH=80 man -l "$page" 2>/dev/null | grep -q "^ *$name  *- " || bad="$bad $name"
done
check "$([ -z "$bad" ] && [ "$(ls "$P"/share/man/man1 | wc -l)" -ge 11 ]; echo $?)" "man -l renders every page ($bad)"

# The completion: commands, a command's options, cached model names.
mkdir -p "$TMP/hub/models--openai-community--gpt2-medium"
out=$(PATH="$P/bin:$PATH" HF_HUB_CACHE="$TMP/hub" bash -c '
. "$1"
t() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _gpt2c; echo "${COMPREPLY[*]}"; }
t gpt2c ge; t gpt2c generate --max-new; t gpt2c serve -m openai' _ "$P/share/bash-completion/completions/gpt2c")
check "$([ "$out" = "generate
--max-new-tokens
openai-community/gpt2-medium" ]; echo $?)" "bash completion (got: $out)"

# DESTDIR stages the same tree under its root, with the final prefix in gpt2c.pc.
make -s BUILD="$BUILD" DESTDIR="$TMP/stage" PREFIX=/opt/gpt2c install >"$TMP/log" 2>&1 &&
    [ -x "$TMP/stage/opt/gpt2c/bin/gpt2c" ] && grep -qx 'prefix=/opt/gpt2c' "$TMP/stage/opt/gpt2c/lib/pkgconfig/gpt2c.pc"
check $? "make install DESTDIR=... PREFIX=/opt/gpt2c"

make -s BUILD="$BUILD" PREFIX="$P" uninstall >"$TMP/log" 2>&1
check "$([ $? -eq 0 ] && [ -z "$(find "$P" -type f -o -type l)" ]; echo $?)" "make uninstall leaves no file ($(find "$P" -type f -o -type l | head -3))"

echo "install: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
