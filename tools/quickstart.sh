#!/bin/sh
# quickstart.sh -- one command from a fresh Debian 12 machine to generated text:
# installs the dependencies, builds gpt2c, and runs `gpt2c generate` with the
# arguments given. Without -m it makes a small randomly initialised checkpoint
# (tools/make_checkpoint.py) so that there is something to run: its text is noise.
#
#   sh tools/quickstart.sh -m /path/to/gpt2 -p "Hello, I'm a language model," -n 40
set -e
cd "$(dirname "$0")/.."
sh tools/install-deps.sh
make -j"$(nproc)" >/dev/null
case " $* " in
*" -m "* | *" --model "*) exec ./build/gpt2c generate "$@" ;;
esac
if [ ! -f build/demo-tiny/model.safetensors ]; then
    /usr/bin/python3 tools/make_checkpoint.py --preset tiny --seed 1 --out build/demo-tiny
fi
echo "(no -m given: using build/demo-tiny, random weights, so the text is noise)" >&2
[ $# -gt 0 ] || set -- -p "Hello, I'm a language model," -n 20
exec ./build/gpt2c generate -m build/demo-tiny "$@"
