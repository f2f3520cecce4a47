#!/usr/bin/python3
"""test_hostile_files.py BUILD_DIR -- runs gpt2c on every malformed folder of
tests/hostile/files/ and checks what its expect.json says: the exit code, and an error
message on standard error that starts with "gpt2c:" and contains the given words (the
file and the field at fault). A crash, a sanitizer report or a hang is a failure.
Prints "hostile files: N passed, N failed".
"""
import json
import os
import subprocess
import sys

BUILD = sys.argv[1]
BIN = os.path.abspath(os.path.join(BUILD, "gpt2c"))
FILES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hostile", "files")
passed = failed = 0
for name in sorted(os.listdir(FILES)):
    d = os.path.join(FILES, name)
    expect = json.load(open(os.path.join(d, "expect.json")))
    cmd = [BIN, expect["command"][0], "-m", d, *expect["command"][1:]]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=60)
        err = r.stderr.strip()
        ok = (r.returncode == expect["exit"] and err.startswith("gpt2c:") and all(w in err for w in expect["words"])
              and "Sanitizer" not in err and "runtime error" not in err)
        why = f"exit {r.returncode}, stderr {err[:300]!r}"
    except subprocess.TimeoutExpired:
        ok, why = False, "timed out"
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL: {name}: expected exit {expect['exit']} and {expect['words']}; got {why}")
print(f"hostile files: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
