"""servebench.py -- what the server benches share (prompt_cache_bench.py, release_bench.py): a
`gpt2c serve` started on a free port and waited for, and a streamed completion timed."""
import http.client
import json
import os
import shutil
import subprocess
import time


def start(binary, model, tmp, *extra):
    """(process, port) of `binary serve -m model` with two slots, once /health answers 200."""
    pf = os.path.join(tmp, f"port{len(os.listdir(tmp))}")
    p = subprocess.Popen([binary, "serve", "-m", model, "--port", "0", "--port-file", pf, "--slots", "2", "--quiet",
                          *extra], stderr=subprocess.DEVNULL)
    for _ in range(1200):
        if os.path.exists(pf) and open(pf).read().strip():
            port = int(open(pf).read())
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    return p, port
            except OSError:
                pass
        time.sleep(0.05)
    p.kill()
    raise RuntimeError(f"{binary} serve -m {model} did not become ready")


def stream(port, prompt, max_tokens):
    """A greedy streamed completion: seconds to its first token and to its last, its text, and
    its finish reason. prompt: a text or a list of token ids."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.monotonic()
    c.request("POST", "/v1/completions",
              json.dumps({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True}),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    first = last = None
    text, finish = "", None
    for line in r:
        if line.startswith(b"data: {"):
            last = time.monotonic() - t0
            first = first or last
            for ch in json.loads(line[6:])["choices"]:
                text += ch["text"]
                finish = ch.get("finish_reason") or finish
    c.close()
    return first, last, text, finish


def stop(servers, tmp):
    """Stops the (process, port) pairs start gave, and removes the folder their port files were in."""
    for p, _ in servers:
        p.terminate()
        p.wait()
    shutil.rmtree(tmp, ignore_errors=True)
