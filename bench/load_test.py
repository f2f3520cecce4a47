#!/usr/bin/python3
"""load_test.py -- many concurrent streaming clients against `gpt2c serve`.

    bench/load_test.py --url http://127.0.0.1:8080 [--clients 32] [--seconds 60] [--max-tokens 64]
    bench/load_test.py --serve "build/gpt2c serve -m build/ref/gpt2-f32 --slots 32" ...
    bench/load_test.py --serve "build/gpt2c serve -m A -m B" --model A --model B ...

First one client alone for --solo-seconds, then --clients at once for --seconds; each client
loops over streamed completions. Every stream is checked: each event parses, the stream ends
with [DONE], the usage matches, and the text equals the non-streamed answer for the same seed
(computed once per seed before the run), so a lost or garbled chunk is an error. With several
--model, seed s asks for the (s mod n)-th, so the clients spread over the server's models. Prints the
aggregate tokens/s against the single client's and exits 1 on any error. With --serve it
starts the server itself (on a free port) and stops it with SIGTERM at the end.
"""
import argparse
import http.client
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
ap.add_argument("--url", default="http://127.0.0.1:8080")
ap.add_argument("--serve", help="a gpt2c serve command line to start (its --port is chosen here)")
ap.add_argument("--clients", type=int, default=32)
ap.add_argument("--seconds", type=float, default=60)
ap.add_argument("--solo-seconds", type=float, default=10)
ap.add_argument("--max-tokens", type=int, default=64)
ap.add_argument("--temperature", type=float, default=0.9)
ap.add_argument("--top-p", type=float, default=1.0)
ap.add_argument("--seeds", type=int, default=16, help="distinct seeds (expected texts computed up front)")
ap.add_argument("--key", default=os.environ.get("GPT2C_API_KEY"))
ap.add_argument("--model", action="append", help="a model to ask for (repeat: seeds alternate between them)")
ap.add_argument("--json", action="store_true")
args = ap.parse_args()

proc = None
if args.serve:
    port_file = os.path.join(tempfile.mkdtemp(prefix="gpt2c-load-"), "port")
    proc = subprocess.Popen(shlex.split(args.serve) + ["--port", "0", "--port-file", port_file, "--quiet"])
    for _ in range(1200):
        if os.path.exists(port_file) and open(port_file).read().strip():
            break
        time.sleep(0.05)
    args.url = f"http://127.0.0.1:{int(open(port_file).read())}"
u = urllib.parse.urlparse(args.url)
HOST, PORT = u.hostname, u.port or 80
HEADERS = {"Content-Type": "application/json"}
if args.key:
    HEADERS["Authorization"] = "Bearer " + args.key
PROMPTS = ["The history of the city begins", "In a shocking finding, scientists discovered",
           "Here is a recipe for", "The best way to learn a language is"]


def body(seed, stream):
    return {"prompt": PROMPTS[seed % len(PROMPTS)], "max_tokens": args.max_tokens, "temperature": args.temperature, "top_p": args.top_p,
            "seed": seed, "stream": stream, "stream_options": {"include_usage": True} if stream else None,
            "model": args.model[seed % len(args.model)] if args.model else None}


def post(obj, timeout=600):
    c = http.client.HTTPConnection(HOST, PORT, timeout=timeout)
    c.request("POST", "/v1/completions", json.dumps(obj), HEADERS)
    r = c.getresponse()
    return c, r


for _ in range(600):  # wait for /health
    try:
        c = http.client.HTTPConnection(HOST, PORT, timeout=5)
        c.request("GET", "/health")
        if c.getresponse().status == 200:
            break
    except OSError:
        pass
    time.sleep(0.1)

expected = {}
for seed in range(args.seeds):
    c, r = post(body(seed, False))
    answer = json.loads(r.read())
    expected[seed] = (answer["choices"][0]["text"], answer["usage"]["completion_tokens"])
    c.close()


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.tokens = self.streams = self.errors = 0
        self.first = []
        self.messages = []

    def error(self, msg):
        with self.lock:
            self.errors += 1
            if len(self.messages) < 10:
                self.messages.append(msg)


def one_stream(seed, st):
    t0 = time.monotonic()
    try:
        c, r = post(body(seed, True))
        if r.status != 200:
            st.error(f"seed {seed}: HTTP {r.status} {r.read()[:200]!r}")
            return
        buf, text, usage, done, first = b"", "", None, False, None
        while True:
            line = r.readline()
            if not line:
                break
            if line.startswith(b"data: "):
                payload = line[6:].strip()
                if payload == b"[DONE]":
                    done = True
                    continue
                ev = json.loads(payload)
                if ev.get("usage"):
                    usage = ev["usage"]
                for ch in ev["choices"]:
                    if first is None:
                        first = time.monotonic() - t0
                    text += ch["text"]
        c.close()
        want_text, want_tokens = expected[seed]
        if not done or usage is None or text != want_text or usage["completion_tokens"] != want_tokens:
            st.error(f"seed {seed}: stream differs (done={done}, usage={usage}, {text!r} vs {want_text!r})")
            return
        with st.lock:
            st.tokens += want_tokens
            st.streams += 1
            st.first.append(first or 0)
    except Exception as e:  # noqa: BLE001 -- any failure is a counted error
        st.error(f"seed {seed}: {type(e).__name__}: {e}")


def run(clients, seconds):
    st = Stats()
    stop = time.monotonic() + seconds

    def client(i):
        k = 0
        while time.monotonic() < stop:
            one_stream((i * 7919 + k) % args.seeds, st)
            k += 1

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return st, time.monotonic() - t0


solo, solo_s = run(1, args.solo_seconds)
many, many_s = run(args.clients, args.seconds)
solo_tps, many_tps = solo.tokens / solo_s, many.tokens / many_s
ttft = sorted(many.first)
report = {"clients": args.clients, "seconds": round(many_s, 1), "streams": many.streams, "errors": many.errors + solo.errors,
          "tokens": many.tokens, "aggregate_tokens_per_s": round(many_tps, 1), "single_client_tokens_per_s": round(solo_tps, 1),
          "ratio": round(many_tps / solo_tps, 2) if solo_tps else None,
          "ttft_p50_s": round(ttft[len(ttft) // 2], 3) if ttft else None,
          "ttft_p99_s": round(ttft[int(len(ttft) * 0.99)], 3) if ttft else None}
if proc:
    proc.send_signal(signal.SIGTERM)
    report["server_exit"] = proc.wait(timeout=60)
    shutil.rmtree(os.path.dirname(port_file), ignore_errors=True)
if args.json:
    print(json.dumps(report))
else:
    print(f"1 client: {solo_tps:.1f} tokens/s; {args.clients} clients: {many_tps:.1f} tokens/s aggregate "
          f"({report['ratio']}x), {many.streams} streams, {report['errors']} errors, "
          f"time to first token p50 {report['ttft_p50_s']} s, p99 {report['ttft_p99_s']} s")
for m in solo.messages + many.messages:
    print("error:", m, file=sys.stderr)
sys.exit(1 if report["errors"] or report.get("server_exit", 0) else 0)
