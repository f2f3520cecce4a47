#!/usr/bin/python3
"""test_hostile_files.py BUILD_DIR -- runs gpt2c on every malformed folder of
tests/hostile/files/ and checks what its expect.json says: the exit code, and an error
message on standard error that starts with "gpt2c:" and contains the given words (the
file and the field at fault). A crash, a sanitizer report, a hang (over 60 s) or a peak
resident size over 512 MiB (the files are a few KB: whatever a file claims, nothing is
allocated for it before it is checked) is a failure.
Prints "hostile files: N passed, N failed".
"""
import json
import os
import subprocess
import sys
import tempfile
import time

BUILD = sys.argv[1]
BIN = os.path.abspath(os.path.join(BUILD, "gpt2c"))
FILES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hostile", "files")
TIMEOUT_S = 60
MAX_RSS_MIB = 512


def run(cmd):
    """(exit code, or minus the signal; standard error; peak resident MiB), or None on a
    timeout. The child is reaped here, by wait4, for its own peak resident size."""
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                p.kill()
                os.wait4(p.pid, 0)
                p.returncode = -9
                return None
            time.sleep(0.002)
        p.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return p.returncode, err.read().decode(errors="replace"), usage.ru_maxrss / 1024


passed = failed = 0
for name in sorted(os.listdir(FILES)):
    d = os.path.join(FILES, name)
    expect = json.load(open(os.path.join(d, "expect.json")))
    cmd = [BIN, expect["command"][0], "-m", d, *expect["command"][1:]]
    r = run(cmd)
    if r is None:
        ok, why = False, f"timed out after {TIMEOUT_S} s"
    else:
        code, err, rss = r
        err = err.strip()
        ok = (code == expect["exit"] and err.startswith("gpt2c:") and all(w in err for w in expect["words"])
              and "Sanitizer" not in err and "runtime error" not in err and rss <= MAX_RSS_MIB)
        why = f"exit {code}, peak {rss:.0f} MiB, stderr {err[:300]!r}"
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL: {name}: expected exit {expect['exit']} and {expect['words']}; got {why}")
print(f"hostile files: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
