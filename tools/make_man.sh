#!/bin/sh
# make_man.sh GPT2C OUTDIR -- the man pages, generated from the program's own help text by
# help2man: gpt2c(1), and gpt2c-COMMAND(1) for each command its --help lists (as git's are).
set -e
BIN=$1
OUT=$2
command -v help2man >/dev/null 2>&1 || { echo "make_man.sh: help2man is missing (apt-get install help2man)" >&2; exit 1; }
mkdir -p "$OUT"
VERSION=$("$BIN" --version)
# The commands and their one-line summaries, from the "commands:" block of gpt2c --help.
COMMANDS=$("$BIN" --help | sed -n '/^commands:/,/^$/s/^  \([a-z]\{1,\}\)\( [A-Z]\{1,\}\)\{0,1\}  \{1,\}\(.*\)/\1\t\3/p')
SEE=$(printf '%s\n' "$COMMANDS" | cut -f1 | sed 's/.*/.BR gpt2c-& (1),/' | sed '$ s/,$//')
INC=$(mktemp)
trap 'rm -f "$INC"' EXIT
printf '[SEE ALSO]\n%s\n' "$SEE" > "$INC"
help2man --no-info --version-string="$VERSION" --include="$INC" \
    --name="run GPT-2-family language models from Hugging Face checkpoints" "$BIN" > "$OUT/gpt2c.1"
printf '[SEE ALSO]\n.BR gpt2c (1)\n' > "$INC"
printf '%s\n' "$COMMANDS" | while IFS="$(printf '\t')" read -r cmd summary; do
    help2man --no-info --version-string="$VERSION" --include="$INC" --help-option="$cmd --help" \
        --name="$summary" "$BIN" |
        sed -e "s/^\.TH GPT2C /.TH GPT2C-$(echo "$cmd" | tr a-z A-Z) /" -e "s/^gpt2c \\\\- /gpt2c-$cmd \\\\- /" \
        > "$OUT/gpt2c-$cmd.1"
done
