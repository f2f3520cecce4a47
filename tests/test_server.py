#!/usr/bin/python3
"""test_server.py BUILD_DIR REF_DIR -- `gpt2c serve` end to end over loopback.

Completions equal the CLI's output for the same parameters and seed (greedy and sampled,
n > 1, token-id prompts), streamed equals non-streamed, echo + logprobs (and the lm-eval
scoring form, max_tokens 0), stop strings; then every class of bad input: malformed JSON,
wrong types, invalid UTF-8, prompts over the context, n and max_tokens over the limits,
oversize and truncated bodies, slowloris headers, a thousand idle connections, clients
vanishing mid-stream and mid-wait, a full queue (429), authentication, unknown routes, and
SIGTERM draining in-flight work. The server must answer correctly and keep serving.
Prints "server: N passed, N failed".
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BUILD, REF = sys.argv[1], sys.argv[2]
BIN = os.path.abspath(os.path.join(BUILD, "gpt2c"))
TINY = os.path.join(REF, "tiny-f32")
BIG = os.path.join(REF, "gpt2-f32")  # gpt2-shaped: slow enough to interrupt
KEY = "sk-test-123"
results = {"pass": 0, "fail": 0}
tmp = tempfile.mkdtemp(prefix="gpt2c-serve-")


def check(cond, what):
    if cond:
        results["pass"] += 1
    else:
        results["fail"] += 1
        print(f"FAIL: {what}", flush=True)


class Server:
    def __init__(self, model, *args):
        self.port_file = os.path.join(tmp, f"port{time.monotonic_ns()}")
        self.log = open(os.path.join(tmp, "serve.log"), "ab")
        self.p = subprocess.Popen([BIN, "serve", "-m", model, "--port", "0", "--port-file", self.port_file, *args],
                                  stdout=self.log, stderr=self.log)
        for _ in range(600):
            if os.path.exists(self.port_file) and open(self.port_file).read().strip():
                self.port = int(open(self.port_file).read())
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("server did not start")
        for _ in range(600):
            if request(self.port, "GET", "/health")[0] == 200:
                return
            time.sleep(0.05)
        raise RuntimeError("server never became ready")

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        return self.p.wait(timeout=30)


def request(port, method, path, body=None, key=KEY, headers=None, timeout=60):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = dict(headers or {})
    if key:
        h["Authorization"] = "Bearer " + key
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
        h["Content-Type"] = "application/json"
    try:
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        return r.status, dict(r.getheaders()), data
    except (ConnectionError, OSError) as e:
        return 0, {}, str(e).encode()
    finally:
        c.close()


def post(port, obj, path="/v1/completions", **kw):
    status, headers, data = request(port, "POST", path, obj, **kw)
    try:
        return status, json.loads(data), headers
    except ValueError:
        return status, data, headers


def stream(port, obj, key=KEY):
    """The events of a streamed completion: parsed chunks, then "[DONE]"."""
    st, _, data = request(port, "POST", "/v1/completions", dict(obj, stream=True), key=key)
    events = []
    for block in data.decode().split("\n\n"):
        if block.startswith("data: "):
            payload = block[6:]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return st, events


def streamed_texts(events, n):
    texts, finish = [""] * n, [None] * n
    for e in events:
        if isinstance(e, dict):
            for c in e.get("choices", []):
                texts[c["index"]] += c["text"]
                if c["finish_reason"]:
                    finish[c["index"]] = c["finish_reason"]
    return texts, finish


def cli(*args):
    out = subprocess.run([BIN, "generate", "-m", TINY, "--json", "--no-stream", *args], capture_output=True, check=True)
    return json.loads(out.stdout)


def cli_text(folder, *args):
    out = subprocess.run([BIN, "generate", "-m", folder, "--json", "--no-stream", *args], capture_output=True, check=True)
    return json.loads(out.stdout)["sequences"][0]["text"]


def metric(port, name, model=None):
    """A sample's value: the model's series, or the first of the family."""
    st, _, data = request(port, "GET", "/metrics")
    labels = r'\{model="%s"\}' % re.escape(model) if model else r"(?:\{[^}]*\})?"
    m = re.search("^" + re.escape(name) + labels + r" (\S+)$", data.decode(), re.M)
    return float(m.group(1)) if m else None


PROMPT = "Hello, my name is"
srv = Server(TINY, "--api-key", KEY, "--slots", "8", "--max-tokens-limit", "512", "--body-limit", "65536",
             "--timeout", "2", "--queue", "16")
P = srv.port
try:
    # ------------------------------------------------------------- basics
    check(request(P, "GET", "/health", key=None)[0] == 200, "health needs no key")
    st, _, body = request(P, "GET", "/v1/models", key=None)
    check(st == 401 and json.loads(body)["error"]["code"] == "invalid_api_key", "no key: 401")
    check(request(P, "GET", "/v1/models", key="wrong")[0] == 401, "wrong key: 401")
    for scheme in ("bearer", "BEARER", "Bearer  "):  # the scheme is case-insensitive (RFC 7235)
        st = request(P, "GET", "/v1/models", key=None, headers={"Authorization": scheme + " " + KEY})[0]
        check(st == 200, f"'{scheme} KEY' is accepted: {st}")
    st, _, body = request(P, "GET", "/v1/models", key=None, headers={"Authorization": "Basic " + KEY})
    check(st == 401 and "Bearer KEY" in json.loads(body)["error"]["message"], f"another scheme: 401 saying what to send: {body}")
    st, _, body = request(P, "GET", "/v1/models")
    check(st == 200 and json.loads(body)["data"][0]["id"] == os.path.basename(TINY),
          f"models lists the served model by its folder's base name: {body}")
    check(request(P, "GET", "/v1/models/" + "other")[0] == 404, "unknown model: 404")
    st, h, body = request(P, "GET", "/", key=None)
    check(st == 200 and b"<textarea" in body and "text/html" in h.get("Content-Type", ""), "the page at /")
    st, tok, _ = post(P, {"content": PROMPT}, path="/tokenize")
    cli_ids = subprocess.run([BIN, "tokenize", "-m", TINY, "-p", PROMPT], capture_output=True, text=True).stdout.split()
    check(st == 200 and tok["tokens"] == [int(x) for x in cli_ids], "/tokenize equals gpt2c tokenize")
    st, detok, _ = post(P, {"tokens": tok["tokens"]}, path="/detokenize")
    check(st == 200 and detok["content"] == PROMPT, "/detokenize round trip")

    # -------------------------------------------------- equal to the CLI
    st, r, _ = post(P, {"model": TINY, "prompt": PROMPT, "max_tokens": 12, "temperature": 0})
    ref = cli("-p", PROMPT, "-n", "12", "--greedy")
    greedy = r["choices"][0]["text"] if st == 200 else None
    check(st == 200 and greedy == ref["sequences"][0]["text"], f"greedy equals the CLI: {r}")
    check(st == 200 and r["object"] == "text_completion" and r["id"].startswith("cmpl-") and r["model"] == os.path.basename(TINY),
          "response fields")
    n_new = len(ref["sequences"][0]["token_ids"])
    check(st == 200 and r["usage"] == {"prompt_tokens": len(cli_ids), "completion_tokens": n_new,
                                        "total_tokens": len(cli_ids) + n_new}, f"usage: {r.get('usage')}")
    check(st == 200 and r["choices"][0]["finish_reason"] == ("length" if n_new == 12 else "stop"), "finish_reason")
    st, r2, _ = post(P, {"prompt": tok["tokens"], "max_tokens": 12, "temperature": 0})
    check(st == 200 and r2["choices"][0]["text"] == greedy, "a token-id prompt gives the same text")
    # The model by the folder's base name as well as by the path typed after -m.
    st, r2, _ = post(P, {"model": os.path.basename(TINY), "prompt": PROMPT, "max_tokens": 12, "temperature": 0})
    check(st == 200 and r2["choices"][0]["text"] == greedy, f"the model by its base name: {st} {r2}")
    check(request(P, "GET", "/v1/models/" + os.path.basename(TINY))[0] == 200, "/v1/models/BASENAME: 200")
    # An empty prompt: generated from <|endoftext|>, as `gpt2c generate -p ""` does.
    st, r2, _ = post(P, {"prompt": "", "max_tokens": 6, "temperature": 0})
    cp = subprocess.run([BIN, "generate", "-m", TINY, "--json", "--no-stream", "-p", "", "-n", "6", "--greedy"],
                        capture_output=True, text=True)
    ref = json.loads(cp.stdout) if cp.returncode == 0 else {"sequences": [{"text": cp.stderr}], "prompt_ids": []}
    check(st == 200 and r2["choices"][0]["text"] == ref["sequences"][0]["text"] and
          r2["usage"]["prompt_tokens"] == len(ref["prompt_ids"]) == 1, f"an empty prompt as the CLI's: {r2} vs {ref}")

    sample = {"prompt": PROMPT, "max_tokens": 16, "temperature": 0.8, "top_p": 0.9, "seed": 42, "n": 3}
    st, r, _ = post(P, sample)
    ref = cli("-p", PROMPT, "-n", "16", "--do-sample", "--temperature", "0.8", "--top-p", "0.9", "--top-k", "0",
              "--seed", "42", "--num-return-sequences", "3")
    texts = [c["text"] for c in r["choices"]] if st == 200 else []
    check(texts == [s["text"] for s in ref["sequences"]], f"sampled n=3 with a seed equals the CLI: {texts}")
    check(len(set(texts)) == 3, "the three sampled choices differ")
    st, events = stream(P, dict(sample, stream_options={"include_usage": True}))
    stexts, sfinish = streamed_texts(events, 3)
    check(st == 200 and stexts == texts, "streamed text equals the non-streamed text")
    check(sfinish == [c["finish_reason"] for c in r["choices"]], "streamed finish reasons")
    check(events and events[-1] == "[DONE]" and events[-2]["choices"] == [] and
          events[-2]["usage"] == r["usage"], "include_usage: a last chunk with the usage, then [DONE]")
    st, r3, _ = post(P, {"prompt": PROMPT, "max_tokens": 5, "temperature": 0, "n": 3})
    check(st == 200 and len({c["text"] for c in r3["choices"]}) == 1 and len(r3["choices"]) == 3,
          "n=3 greedy: three identical choices")
    st, r4, _ = post(P, {"prompt": ["One", "Two"], "max_tokens": 4, "temperature": 0, "n": 2})
    one = cli("-p", "One", "-n", "4", "--greedy")["sequences"][0]["text"]
    two = cli("-p", "Two", "-n", "4", "--greedy")["sequences"][0]["text"]
    check(st == 200 and [c["text"] for c in r4["choices"]] == [one, one, two, two] and
          [c["index"] for c in r4["choices"]] == [0, 1, 2, 3], "two prompts x n=2, in order")

    # ------------------------------------------------ echo and logprobs
    st, r, _ = post(P, {"prompt": PROMPT, "max_tokens": 5, "temperature": 0, "echo": True, "logprobs": 3})
    ref = cli("-p", PROMPT, "-n", "5", "--greedy", "--logprobs", "3")
    lp = r["choices"][0]["logprobs"] if st == 200 else {}
    np_ = len(cli_ids)
    check(st == 200 and r["choices"][0]["text"] == PROMPT + ref["sequences"][0]["text"], "echo prepends the prompt")
    check(len(lp.get("tokens", [])) == np_ + 5 and lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None,
          "echo logprobs cover prompt and completion, the first is null")
    want = [e["logprob"] for e in ref["sequences"][0]["logprobs"]]
    got = lp.get("token_logprobs", [None] * (np_ + 5))[np_:]
    check(all(g is not None and abs(g - w) < 1e-5 for g, w in zip(got, want)), f"completion logprobs equal the CLI's")
    # OpenAI's: up to logprobs + 1 entries, always the chosen token with its own log-probability
    # (the echoed prompt's tokens are rarely among a random model's top 3).
    tops = lp.get("top_logprobs", [])[1:]
    check(tops and all(len(t) <= 4 for t in tops), "top_logprobs: at most logprobs + 1")
    check(all(lp["tokens"][i] in t and abs(t[lp["tokens"][i]] - lp["token_logprobs"][i]) < 1e-6
              for i, t in enumerate(tops, 1)), "top_logprobs include each chosen token, echoed and generated")
    st, r3, _ = post(P, {"prompt": PROMPT, "max_tokens": 8, "temperature": 1.5, "seed": 3, "logprobs": 1})
    l3 = r3["choices"][0]["logprobs"] if st == 200 else {"tokens": [], "top_logprobs": []}
    check(st == 200 and len(l3["tokens"]) == 8 and all(t in top and len(top) <= 2 for t, top in zip(l3["tokens"], l3["top_logprobs"])),
          f"sampled tokens are in their top_logprobs: {l3}")
    check(lp.get("text_offset", [None])[:2] == [0, len(lp["tokens"][0])], "text_offset counts characters")
    st, s, _ = post(P, {"prompt": PROMPT, "max_tokens": 0, "echo": True, "logprobs": 0})
    slp = s["choices"][0]["logprobs"] if st == 200 else {}
    check(st == 200 and s["choices"][0]["text"] == PROMPT and slp["token_logprobs"][1:] == lp["token_logprobs"][1:np_],
          "scoring (echo, max_tokens 0) gives the prompt's log-probabilities")
    check(st == 200 and all(list(t) == [w] for t, w in zip(slp["top_logprobs"][1:], slp["tokens"][1:])),
          "logprobs 0: the chosen token alone in top_logprobs")
    # The prompt's log-probabilities, checked one position at a time against generation.
    st, s1, _ = post(P, {"prompt": tok["tokens"][:2], "max_tokens": 1, "temperature": 0, "logprobs": 1})
    top1 = s1["choices"][0]["logprobs"]["top_logprobs"][0] if st == 200 else {}
    check(abs(list(top1.values())[0] - max(lp["top_logprobs"][2].values())) < 1e-5, "prompt top logprob = next-token top")

    # ---------------------------------------------------------- stop strings
    cut = greedy[3:7] if len(greedy) >= 7 else greedy[-2:]
    want = greedy[:greedy.index(cut)]
    st, r, _ = post(P, {"prompt": PROMPT, "max_tokens": 12, "temperature": 0, "stop": [cut, "zzzz"]})
    check(st == 200 and r["choices"][0]["text"] == want and r["choices"][0]["finish_reason"] == "stop",
          f"stop string cut: {r} vs {want!r}")
    st, events = stream(P, {"prompt": PROMPT, "max_tokens": 12, "temperature": 0, "stop": cut})
    check(streamed_texts(events, 1) == ([want], ["stop"]), "streamed stop string: same text, nothing lost")

    # ----------------------------------------------------------- bad input
    def err(obj, status, param=None, code=None, what=""):
        st, r, _ = post(P, obj) if not isinstance(obj, bytes) else (lambda t: (t[0], json.loads(t[2]), t[1]))(
            request(P, "POST", "/v1/completions", obj, headers={"Content-Type": "application/json"}))
        e = r.get("error", {}) if isinstance(r, dict) else {}
        ok = st == status and isinstance(e.get("message"), str) and e.get("type")
        ok = ok and (param is None or e.get("param") == param) and (code is None or e.get("code") == code)
        check(ok, f"{what}: expected {status} {param} {code}, got {st} {r}")

    # tests/hostile/requests.jsonl: each bad body with its status, param and code ("raw"
    # bodies are latin-1 strings standing for bytes, so that invalid UTF-8 can be written).
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "hostile", "requests.jsonl")) as f:
        for line in f:
            c = json.loads(line)
            err(c["raw"].encode("latin-1") if "raw" in c else c["json"], c["status"], c["param"], c["code"], c["name"])
    st, r, _ = post(P, {"prompt": "x", "max_tokens": 2, "foo": {"bar": [1]}})
    check(st == 200, "unknown fields are ignored")
    st, _, body = request(P, "POST", "/v1/completions", b'{"prompt": "' + b"a" * 70000 + b'"}')
    check(st == 413 and b"error" in body, "a body over the limit: 413")
    st, _, body = request(P, "GET", "/v1/completions")
    check(st == 405, "GET on /v1/completions: 405")
    check(request(P, "POST", "/v1/chat/completions", {})[0] == 404, "chat completions: 404 with a reason")
    check(request(P, "GET", "/nowhere")[0] == 404, "unknown path: 404")

    def raw(data, read=True, timeout=5):
        s = socket.create_connection(("127.0.0.1", P), timeout=timeout)
        s.sendall(data)
        out = b""
        try:
            while read:
                b = s.recv(65536)
                if not b:
                    break
                out += b
        except socket.timeout:
            out += b"<timeout>"
        s.close()
        return out

    auth = f"Authorization: Bearer {KEY}\r\n".encode()
    out = raw(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Length: 10000000\r\n\r\n{", timeout=5)
    check(out.startswith(b"HTTP/1.1 413"), f"a declared 10 MB body: 413 before reading it ({out[:40]!r})")
    t0 = time.monotonic()
    out = raw(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Length: 100\r\n\r\n{\"prompt\"", timeout=10)
    check(b"<timeout>" not in out and time.monotonic() - t0 < 8, "a truncated body: the idle timeout closes it")
    out = raw(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n", timeout=10)
    check(out.startswith(b"HTTP/1.1 431") or out.startswith(b"HTTP/1.1 413") or out == b"",
          f"huge headers: refused ({out[:30]!r})")
    out = raw(b"BLAH\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 400") or out == b"", "garbage request line: 400 or closed")

    # Slow clients: headers a byte at a time and a crowd of idle sockets do not
    # hold the server; stalled ones are closed by the idle timeout.
    slow = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", P))
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHo")
        slow.append(s)
    idle = []
    try:
        for _ in range(2000):
            idle.append(socket.create_connection(("127.0.0.1", P)))
    except OSError as e:
        print(f"note: stopped opening idle sockets at {len(idle)}: {e}")
    t0 = time.monotonic()
    for i in range(3):
        for s in slow:
            s.send(b"s")
        time.sleep(0.3)
    st, r, _ = post(P, {"prompt": PROMPT, "max_tokens": 4, "temperature": 0}, timeout=10)
    check(st == 200 and time.monotonic() - t0 < 5, "served while 20 slowloris and 2000 idle connections are open")
    time.sleep(3.5)
    closed = 0
    for s in idle[:50] + slow:
        s.settimeout(2)
        try:
            closed += s.recv(10) == b""
        except (ConnectionResetError, socket.timeout):
            closed += 0 if isinstance(sys.exc_info()[1], socket.timeout) else 1
    check(closed == 70, f"stalled connections closed after the idle timeout ({closed}/70)")
    for s in idle + slow:
        s.close()
    check(request(P, "GET", "/health")[0] == 200, "healthy after the crowd")

    st, _, data = request(P, "GET", "/metrics")
    text = data.decode()
    check(st == 200 and re.search(r'^gpt2c_time_to_first_token_seconds_count\{model="tiny-f32"\} [1-9]', text, re.M) and
          re.search(r'^gpt2c_requests_total\{model="tiny-f32",code="400"\} [1-9]', text, re.M) and
          re.search(r'^gpt2c_requests_total\{code="404"\} [1-9]', text, re.M) and
          re.search(r'^gpt2c_queue_depth\{model="tiny-f32"\} 0$', text, re.M),
          "metrics: counters, gauges, histograms")
finally:
    rc = srv.stop()
check(rc == 0, f"SIGTERM: exit 0 (got {rc})")

# The names a request may give as "model": with --model-id, that name alone; else
# the folder's base name (what /v1/models lists) and the path as typed.
for spec, args, listed, good, refused in (
        (TINY, ["--model-id", "custom"], "custom", ["custom"], [TINY, os.path.basename(TINY)]),
        (TINY + "/", [], os.path.basename(TINY), [TINY + "/", os.path.basename(TINY)], ["custom"])):
    named = Server(spec, "--quiet", *args)
    try:
        st, _, body = request(named.port, "GET", "/v1/models")
        check(st == 200 and [m["id"] for m in json.loads(body)["data"]] == [listed], f"{spec} {args}: /v1/models {body}")
        for name in good + refused:
            st, r, _ = post(named.port, {"model": name, "prompt": "x", "max_tokens": 1})
            want = 200 if name in good else 404
            check(st == want and (st != 200 or r["model"] == listed), f"{spec} {args}: model {name!r}: {st} {r}")
    finally:
        check(named.stop() == 0, f"{spec} {args}: SIGTERM")

# --------------------------------------------- a slow model: cancel, queue, drain
# The grace outlasts the drained stream below even under the sanitizers on a loaded machine
# (at 20 s a CI run cut it: the deadline, not the drain, ended it).
big = Server(BIG, "--slots", "2", "--queue", "1", "--timeout", "5", "--shutdown-grace", "60")
B = big.port
try:
    long = {"prompt": PROMPT, "max_tokens": 400, "ignore_eos": True, "temperature": 0}
    # A client that vanishes mid-stream: its sequence leaves at the next step.
    s = socket.create_connection(("127.0.0.1", B))
    body = json.dumps(dict(long, stream=True)).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
              str(len(body)).encode() + b"\r\n\r\n" + body)
    got = b""
    while got.count(b"data: ") < 2:
        got += s.recv(4096)
    steps0 = metric(B, "gpt2c_steps_total")
    s.close()
    t0 = time.monotonic()
    while metric(B, "gpt2c_active_requests") != 0 and time.monotonic() - t0 < 5:
        time.sleep(0.05)
    steps1 = metric(B, "gpt2c_steps_total")
    check(metric(B, "gpt2c_active_requests") == 0 and steps1 - steps0 < 100,
          f"a vanished streaming client stops its generation ({steps1 - steps0} more steps)")
    # One that vanishes while waiting for a non-streamed answer.
    s = socket.create_connection(("127.0.0.1", B))
    body = json.dumps(long).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
              str(len(body)).encode() + b"\r\n\r\n" + body)
    time.sleep(0.5)
    steps0 = metric(B, "gpt2c_steps_total")
    s.close()
    t0 = time.monotonic()
    while metric(B, "gpt2c_active_requests") != 0 and time.monotonic() - t0 < 5:
        time.sleep(0.05)
    check(metric(B, "gpt2c_steps_total") - steps0 < 100, "a vanished waiting client stops its generation")
    # A full queue: two streams hold both slots, a third request waits in the queue's one
    # place, and every further one gets 429 with Retry-After. The holders are long streams
    # closed by the test, so no slot frees itself while the refusals are being checked.
    def until(name, value):
        t0 = time.monotonic()
        while metric(B, name) != value and time.monotonic() - t0 < 20:
            time.sleep(0.02)

    holders = []
    for _ in range(2):
        s = socket.create_connection(("127.0.0.1", B))
        body = json.dumps(dict(long, stream=True)).encode()
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                  str(len(body)).encode() + b"\r\n\r\n" + body)
        holders.append(s)
    until("gpt2c_active_requests", 2)
    waiting = {}
    waiter = threading.Thread(target=lambda: waiting.update(r=post(B, dict(long, max_tokens=5), key=None)))
    waiter.start()
    until("gpt2c_queue_depth", 1)
    refused = [post(B, dict(long, max_tokens=5), key=None) for _ in range(3)]
    for s in holders:
        s.close()
    waiter.join(timeout=60)
    codes = [r[0] for r in refused] + [waiting.get("r", (0,))[0]]
    check(codes == [429, 429, 429, 200] and all(r[2].get("Retry-After") == "1" for r in refused),
          f"full queue: 429 with Retry-After, the queued request served ({codes})")
    until("gpt2c_active_requests", 0)
    # SIGTERM while a stream runs: it finishes, then the process exits 0.
    result = {}

    def streamer():
        result["r"] = stream(B, dict(long, max_tokens=100), key=None)  # long enough to outlast the checks below

    t = threading.Thread(target=streamer)
    t.start()
    # Signal only once the stream runs: a request still on its way in when the
    # signal lands is refused 503, which is right but not what this checks.
    until("gpt2c_active_requests", 1)
    time.sleep(0.2)
    big.p.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    # While it drains, a new request is answered 503 and /health says so.
    st_new, body_new, _ = post(B, {"prompt": "Hello", "max_tokens": 2}, key=None)
    st_health, _, health = request(B, "GET", "/health", key=None)
    check(st_new == 503 and body_new["error"]["code"] == "shutting_down" and st_health == 503 and
          b"stopping" in health, f"SIGTERM: new requests refused while draining ({st_new} {body_new}, {st_health})")
    t.join(timeout=120)
    st, events = result.get("r", (0, []))
    texts, finish = streamed_texts(events, 1)
    check(st == 200 and events and events[-1] == "[DONE]" and finish == ["length"],
          f"SIGTERM: the in-flight stream completes ({st} {finish} {events[-1:] if events else events})")
    check(big.p.wait(timeout=60) == 0, "SIGTERM: exit 0 after draining")
finally:
    if big.p.poll() is None:
        big.p.kill()

# The prompt cache: a request whose prompt starts as an earlier one's did starts after the
# shared prefix, and answers exactly as without the cache (and as the CLI); /metrics counts
# the hits and the tokens not computed again. --no-prompt-cache computes every prompt whole.
PREFIX = "The following is a long shared context. " * 30
for args, cached in (([], True), (["--no-prompt-cache"], False)):
    pc = Server(TINY, "--slots", "2", "--quiet", *args)
    try:
        texts = []
        for q in ("Question one:", "Question two:", "Question one:"):
            st, body, _ = post(pc.port, {"prompt": PREFIX + q, "max_tokens": 8, "temperature": 0}, key=None)
            want = cli_text(TINY, "-n", "8", "-p", PREFIX + q, "--greedy")
            check(st == 200 and body["choices"][0]["text"] == want,
                  f"prompt cache {'on' if cached else 'off'}: {q} answers as the CLI ({st} {body})")
            texts.append(body["choices"][0]["text"] if st == 200 else None)
        n_prefix = len(subprocess.run([BIN, "tokenize", "-m", TINY, "-p", PREFIX], capture_output=True,
                                      text=True).stdout.split())
        hits, reused = metric(pc.port, "gpt2c_prompt_cache_hits_total"), metric(pc.port, "gpt2c_prompt_cache_tokens_total")
        check((hits == 2 and reused >= 2 * n_prefix) if cached else (hits == 0 and reused == 0),
              f"prompt cache {'on' if cached else 'off'}: hits {hits}, reused {reused} tokens (prefix {n_prefix})")
    finally:
        check(pc.stop() == 0, "prompt cache: SIGTERM")

# Speculative decoding: with a draft model, concurrent greedy requests answer exactly as the CLI
# without one, a seeded sampled request as the CLI with the same draft and seed, streamed as
# not; /metrics counts the drafted and kept tokens. --draft-dtype lets each of several models
# draft for itself; --draft with several models is a usage error.
DRAFT = os.path.join(REF, "tiny-draft")
sp = Server(TINY, "--slots", "4", "--quiet", "--draft", DRAFT, "--num-assistant-tokens", "3")
try:
    prompts = ["Hello, my name is", "The meaning of life", "Once upon a time", "In the beginning"]
    got = {}
    threads = [threading.Thread(target=lambda q=q: got.update({q: post(sp.port, {"prompt": q, "max_tokens": 16,
                                                                                 "temperature": 0}, key=None)}))
               for q in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for q in prompts:
        st, body, _ = got.get(q, (0, None, None))
        check(st == 200 and body["choices"][0]["text"] == cli_text(TINY, "-n", "16", "-p", q, "--greedy"),
              f"draft: concurrent greedy '{q}' answers as the CLI without a draft ({st} {body})")
    req = {"prompt": PROMPT, "max_tokens": 16, "temperature": 0.8, "seed": 11}
    st, body, _ = post(sp.port, req, key=None)
    want = cli_text(TINY, "-n", "16", "-p", PROMPT, "--do-sample", "--top-k", "0", "--temperature", "0.8", "--seed",
                    "11", "--draft", DRAFT, "--num-assistant-tokens", "3")
    check(st == 200 and body["choices"][0]["text"] == want,
          f"draft: a seeded sampled request answers as the CLI with the same draft ({body})")
    st2, events = stream(sp.port, req, key=None)
    check(st2 == 200 and streamed_texts(events, 1)[0][0] == want, "draft: streamed equals non-streamed")
    drafted, kept = metric(sp.port, "gpt2c_draft_tokens_total"), metric(sp.port, "gpt2c_draft_accepted_tokens_total")
    check(drafted and drafted > 0 and 0 < kept <= drafted, f"draft: /metrics counts {drafted} drafted, {kept} kept")
finally:
    check(sp.stop() == 0, "draft: SIGTERM")
sp = Server(TINY, "-m", os.path.join(REF, "neo-mini-f32"), "--quiet", "--preload", "--draft-dtype", "f16")
try:
    for name, folder in (("tiny-f32", TINY), ("neo-mini-f32", os.path.join(REF, "neo-mini-f32"))):
        st, body, _ = post(sp.port, {"model": name, "prompt": PROMPT, "max_tokens": 10, "temperature": 0}, key=None)
        check(st == 200 and body["choices"][0]["text"] == cli_text(folder, "-n", "10", "-p", PROMPT, "--greedy") and
              metric(sp.port, "gpt2c_draft_tokens_total", name) > 0,
              f"--draft-dtype f16, two models: {name} drafts for itself and answers as the CLI ({body})")
finally:
    check(sp.stop() == 0, "draft-dtype: SIGTERM")
r = subprocess.run([BIN, "serve", "-m", TINY, "-m", DRAFT, "--draft", DRAFT], capture_output=True, text=True)
check(r.returncode == 2 and "--draft" in r.stderr, f"--draft with two models: usage error ({r.returncode} {r.stderr})")

# A LoRA adapter from `gpt2c finetune --lora-rank`, merged at load with --lora: the server answers
# as the CLI with the same adapter, which is not what the base model says.
with tempfile.TemporaryDirectory() as ltmp:
    with open(os.path.join(ltmp, "train.txt"), "w") as f:
        f.write("the cat sat on the mat and the dog sat on the log.\n" * 40)
    adapter = os.path.join(ltmp, "adapter")
    r = subprocess.run([BIN, "finetune", "-m", TINY, "--train", os.path.join(ltmp, "train.txt"), "-o", adapter,
                        "--block-size", "16", "--max-steps", "5", "--lr", "0.05", "--lora-rank", "4",
                        "--validation-split", "0"], capture_output=True, text=True)
    check(r.returncode == 0, f"finetune --lora-rank for the server: {r.stderr}")
    sl = Server(TINY, "--quiet", "--lora", adapter)
    try:
        st, body, _ = post(sl.port, {"prompt": PROMPT, "max_tokens": 10, "temperature": 0}, key=None)
        want = cli_text(TINY, "-n", "10", "-p", PROMPT, "--greedy", "--lora", adapter)
        check(st == 200 and body["choices"][0]["text"] == want and want != cli_text(TINY, "-n", "10", "-p", PROMPT,
                                                                                      "--greedy"),
              f"--lora: the server answers as the CLI with the adapter, unlike the base ({body})")
    finally:
        check(sl.stop() == 0, "lora: SIGTERM")

# --compute bf16 (where the CPU has AVX512_BF16): the server answers as the CLI with it, and
# /v1/models says so.
if "avx512_bf16" in open("/proc/cpuinfo").read() and not os.environ.get("GPT2C_KERNELS"):
    sb = Server(TINY, "--quiet", "--compute", "bf16")
    try:
        st, body, _ = post(sb.port, {"prompt": PROMPT, "max_tokens": 10, "temperature": 0}, key=None)
        want = cli_text(TINY, "-n", "10", "-p", PROMPT, "--greedy", "--compute", "bf16")
        _, _, data = request(sb.port, "GET", "/v1/models", key=None)
        check(st == 200 and body["choices"][0]["text"] == want and
              json.loads(data)["data"][0]["meta"]["compute"] == "bf16",
              f"--compute bf16: the server answers as the CLI with it ({body}, {data})")
    finally:
        check(sb.stop() == 0, "compute bf16: SIGTERM")

# The other architectures served as GPT-2 is: a greedy completion and a sampled one equal
# the CLI's, streamed equals non-streamed, and /v1/models names the architecture.
ARCH_TYPES = {"neo": "gpt_neo", "opt": "opt", "neox": "gpt_neox", "bloom": "bloom", "starcoder": "gpt_bigcode",
              "codegen": "codegen"}
for arch in ("neo-mini-f32", "opt-postln-f32", "neox-seqres-f32", "bloom-mini-f32", "starcoder-mqa-f32",
             "codegen-mini-f32"):
    folder = os.path.join(REF, arch)
    srv = Server(folder, "--api-key", KEY, "--slots", "4")
    try:
        for extra in ({"temperature": 0}, {"temperature": 0.9, "seed": 5}):
            req = dict({"prompt": PROMPT, "max_tokens": 6}, **extra)
            st, body, _ = post(srv.port, req)
            args = ["-n", "6", "-p", PROMPT] + (["--seed", "5", "--temperature", "0.9", "--do-sample", "--top-k", "0"]
                                                if extra.get("seed") else ["--greedy"])
            want = json.loads(subprocess.run([BIN, "generate", "-m", folder, "--json", "--no-stream", *args],
                                             capture_output=True, check=True).stdout)
            check(st == 200 and body["choices"][0]["text"] == want["sequences"][0]["text"],
                  f"{arch} {extra}: the CLI's completion ({body})")
            st2, events = stream(srv.port, req)
            check(st2 == 200 and streamed_texts(events, 1)[0][0] == body["choices"][0]["text"],
                  f"{arch} {extra}: streamed equals non-streamed")
        st, _, data = request(srv.port, "GET", "/v1/models")
        check(st == 200 and json.loads(data)["data"][0]["meta"].get("model_type") ==
              ARCH_TYPES[arch.split("-")[0]], f"{arch}: /v1/models {data}")
        if arch.startswith("starcoder"):
            # Fill-in-the-middle: `suffix` makes <fim_prefix>prompt<fim_suffix>suffix<fim_middle>,
            # the prompt the CLI is given by hand; token-array prompts cannot take a suffix.
            pre, suf = "def area(r):\n    ", "\n    return a"
            req = {"prompt": pre, "suffix": suf, "max_tokens": 6, "temperature": 0}
            st, body, _ = post(srv.port, req)
            want = json.loads(subprocess.run([BIN, "generate", "-m", folder, "--json", "--no-stream", "-n", "6",
                                              "--greedy", "--new-only", "-p",
                                              f"<fim_prefix>{pre}<fim_suffix>{suf}<fim_middle>"],
                                             capture_output=True, check=True).stdout)
            check(st == 200 and body["choices"][0]["text"] == want["sequences"][0]["text"] and
                  body["usage"]["prompt_tokens"] == len(want["prompt_ids"]) and
                  [want["prompt_ids"][0], want["prompt_ids"][-1]] == [1, 2],
                  f"{arch}: suffix fills in the middle as the CLI's FIM prompt ({body}, {want})")
            st, body, _ = post(srv.port, {"prompt": [1, 2, 3], "suffix": suf, "max_tokens": 2})
            check(st == 400 and body["error"]["param"] == "prompt", f"{arch}: suffix with token ids: {st} {body}")
    finally:
        srv.stop()

# A model that only continues text refuses a suffix, naming it.
srv = Server(TINY)
try:
    st, body, _ = post(srv.port, {"prompt": "Hello", "suffix": " world", "max_tokens": 2})
    check(st == 400 and body["error"]["param"] == "suffix" and "fill-in-the-middle" in body["error"]["message"],
          f"GPT-2 refuses suffix: {st} {body}")
    st, body, _ = post(srv.port, {"prompt": "Hello", "suffix": "", "max_tokens": 2})
    check(st == 200, f"an empty suffix is no suffix: {st} {body}")
finally:
    srv.stop()

# ------------------------------------------------------- several models in one server
# Each model answers as it does alone (the CLI's text for its folder), loads on its first
# request (or at start with --preload), and counts in metrics labelled by its name. Under
# --max-memory the least recently used idle model is unloaded to make room; a busy one never is.
NEO, OPT = os.path.join(REF, "neo-mini-f32"), os.path.join(REF, "opt-postln-f32")
MULTI = [(os.path.basename(TINY), TINY), ("neo", NEO), (os.path.basename(OPT), OPT)]


def models_list(port):
    st, _, body = request(port, "GET", "/v1/models")
    return {m["id"]: m for m in json.loads(body)["data"]} if st == 200 else {}


multi = Server(TINY, "-m", "neo=" + NEO, "-m", OPT, "--slots", "4", "--api-key", KEY)
M = multi.port
try:
    listed = models_list(M)
    check(list(listed) == [name for name, _ in MULTI] and all(m["status"] == "unloaded" for m in listed.values()),
          f"several models: /v1/models lists them in order, none loaded yet ({listed})")
    sent = {name: [0, 0] for name, _ in MULTI}  # prompt and completion tokens answered per model
    for name, folder in MULTI:
        for extra, args in (({"temperature": 0}, ["--greedy"]),
                            ({"temperature": 0.9, "seed": 11}, ["--seed", "11", "--temperature", "0.9", "--do-sample", "--top-k", "0"])):
            req = dict({"model": name, "prompt": PROMPT, "max_tokens": 7}, **extra)
            st, body, _ = post(M, req)
            want = cli_text(folder, "-n", "7", "-p", PROMPT, *args)
            check(st == 200 and body["model"] == name and body["choices"][0]["text"] == want,
                  f"several models: {name} {extra} answers as the CLI does for its folder ({st} {body})")
            if st == 200:
                sent[name][0] += body["usage"]["prompt_tokens"]
                sent[name][1] += body["usage"]["completion_tokens"]
            st2, events = stream(M, req)
            check(st2 == 200 and streamed_texts(events, 1)[0][0] == want and
                  all(e["model"] == name for e in events if isinstance(e, dict)),
                  f"several models: {name} {extra}: streamed equals non-streamed")
            if st2 == 200:
                sent[name][0] += body["usage"]["prompt_tokens"]
                sent[name][1] += body["usage"]["completion_tokens"]
        st, tok, _ = post(M, {"model": name, "content": PROMPT}, path="/tokenize")
        ids = subprocess.run([BIN, "tokenize", "-m", folder, "-p", PROMPT], capture_output=True, text=True).stdout.split()
        check(st == 200 and tok["tokens"] == [int(x) for x in ids], f"several models: /tokenize with {name}: {st} {tok}")
    st, body, _ = post(M, {"prompt": PROMPT, "max_tokens": 7, "temperature": 0})
    check(st == 200 and body["model"] == MULTI[0][0] and body["choices"][0]["text"] == cli_text(TINY, "-n", "7", "-p", PROMPT, "--greedy"),
          f"several models: a request naming none gets the first ({st} {body})")
    if st == 200:
        sent[MULTI[0][0]][0] += body["usage"]["prompt_tokens"]
        sent[MULTI[0][0]][1] += body["usage"]["completion_tokens"]
    st, body, _ = post(M, {"model": "other", "prompt": PROMPT})
    check(st == 404 and body["error"]["code"] == "model_not_found" and all(f"'{n}'" in body["error"]["message"] for n, _ in MULTI),
          f"several models: an unknown one is 404, naming those served ({st} {body})")
    listed = models_list(M)
    check(all(m["status"] == "loaded" and m["meta"]["model_type"] == t for m, t in
              zip(listed.values(), ("gpt2", "gpt_neo", "opt"))), f"several models: each loaded on its first request ({listed})")
    for name, _ in MULTI:
        got = (metric(M, "gpt2c_prompt_tokens_total", name), metric(M, "gpt2c_generation_tokens_total", name),
               metric(M, "gpt2c_model_loads_total", name), metric(M, "gpt2c_model_loaded", name))
        check(got == (sent[name][0], sent[name][1], 1, 1), f"several models: {name}'s metrics ({got}, sent {sent[name]})")
    check(metric(M, "gpt2c_requests_total", None) is not None and
          re.search(r'^gpt2c_requests_total\{model="neo",code="200"\} [1-9]', request(M, "GET", "/metrics")[2].decode(), re.M),
          "several models: requests counted by model")
finally:
    check(multi.stop() == 0, "several models: SIGTERM")

# Concurrent streams spread over the three models, each checked against its non-streamed text.
def load_test(serve, clients, max_tokens, what, *extra):
    """bench/load_test.py for 4 s: every stream equal to its non-streamed text, no error."""
    load = subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "load_test.py"),
                           "--serve", serve, "--clients", str(clients), "--seconds", "4", "--solo-seconds", "1",
                           "--max-tokens", str(max_tokens), "--seeds", "6", "--json", *extra],
                          capture_output=True, text=True, timeout=300)
    try:
        rep = json.loads(load.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        rep = {}
    check(load.returncode == 0 and rep.get("errors") == 0 and rep.get("streams", 0) > clients and rep.get("server_exit") == 0,
          f"{what}: no lost or garbled stream ({rep}, {load.stderr[-500:]})")


load_test(f"{BIN} serve -m {TINY} -m neo={NEO} -m {OPT} --slots 4 --preload", 9, 16,
          "several models: 9 streaming clients over 3 models", *[a for name, _ in MULTI for a in ("--model", name)])

# --preload loads all before /health says ok; models that cannot fit together fail the start.
pre = Server(TINY, "-m", BIG, "--preload", "--slots", "1", "--quiet")
try:
    listed = models_list(pre.port)
    check(all(m["status"] == "loaded" for m in listed.values()), f"--preload: all loaded when ready ({listed})")
    sizes = {name: m["meta"]["memory_bytes"] for name, m in listed.items()}
finally:
    check(pre.stop() == 0, "--preload: SIGTERM")
tiny_b, big_b = sizes[os.path.basename(TINY)], sizes[os.path.basename(BIG)]
p = subprocess.Popen([BIN, "serve", "-m", TINY, "-m", BIG, "--preload", "--slots", "1", "--port", "0", "--max-memory",
                      str(big_b + tiny_b - 1)], stderr=subprocess.PIPE, text=True)
try:
    err = p.communicate(timeout=120)[1]
except subprocess.TimeoutExpired:  # it started: the budget was not applied
    p.kill()
    err = p.communicate()[1]
check(p.returncode == 1 and "--max-memory" in err, f"--preload over the budget: exit 1 saying why ({p.returncode} {err[-300:]})")
for bad, why in ((["-m", TINY, "-m", TINY], "two models answer to the name"),
                 (["-m", TINY, "-m", BIG, "--model-id", "x"], "--model-id names one model"),
                 (["-m", "=" + TINY], "NAME=MODEL needs both"),
                 (["-m", TINY, "--max-memory", "lots"], "--max-memory: 'lots' is not a size")):
    p = subprocess.run([BIN, "serve", *bad, "--port", "0"], capture_output=True, text=True, timeout=60)
    check(p.returncode == 2 and why in p.stderr, f"serve {bad}: usage error ({p.returncode} {p.stderr})")

# The budget holds one of the two: the idle one is unloaded for the other, a busy one is not
# (503 with Retry-After), and a reloaded model answers as before.
budget = Server(TINY, "-m", "big=" + BIG, "--slots", "1", "--max-memory", str(big_b + tiny_b - 1), "--timeout", "5")
U = budget.port
try:
    small = {"prompt": PROMPT, "max_tokens": 6, "temperature": 0}
    st, first, _ = post(U, small, key=None)
    s = socket.create_connection(("127.0.0.1", U))
    body = json.dumps({"model": "big", "prompt": PROMPT, "max_tokens": 400, "ignore_eos": True, "stream": True}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
              str(len(body)).encode() + b"\r\n\r\n" + body)
    got = b""
    while got.count(b"data: ") < 2:
        got += s.recv(4096)
    check(metric(U, "gpt2c_model_loaded", os.path.basename(TINY)) == 0 and metric(U, "gpt2c_model_loaded", "big") == 1 and
          metric(U, "gpt2c_model_unloads_total", os.path.basename(TINY)) == 1,
          "--max-memory: the idle model is unloaded to make room for the requested one")
    st2, busy, h = post(U, small, key=None)
    check(st2 == 503 and busy["error"]["code"] == "model_unavailable" and h.get("Retry-After") == "1" and
          metric(U, "gpt2c_model_loaded", "big") == 1,
          f"--max-memory: no room while the other model is busy: 503 with Retry-After ({st2} {busy})")
    s.close()
    t0 = time.monotonic()
    st3, again = 0, None
    while st3 != 200 and time.monotonic() - t0 < 30:
        st3, again, _ = post(U, small, key=None)
        time.sleep(0.05)
    check(st == 200 and st3 == 200 and again["choices"][0]["text"] == first["choices"][0]["text"] and
          metric(U, "gpt2c_model_loaded", "big") == 0 and metric(U, "gpt2c_model_loads_total", os.path.basename(TINY)) == 2,
          f"--max-memory: once the other is idle, the reloaded model answers as before ({st} {st3} {again})")
finally:
    check(budget.stop() == 0, "--max-memory: SIGTERM")

# Under systemd: READY=1 once the model is loaded and STOPPING=1 on SIGTERM (sd_notify,
# where the build links libsystemd, as tools/install-deps.sh provides), and log lines that
# carry their level ("<6>" info, "<4>" warning, "<3>" error) when stderr is the journal's
# stream, which systemd names in JOURNAL_STREAM; anywhere else, plain lines.
linked = "libsystemd" in subprocess.run(["ldd", BIN], capture_output=True, text=True).stdout
sock_path = os.path.join(tmp, "notify.sock")
ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
ns.bind(sock_path)
ns.settimeout(60)
journal = open(os.path.join(tmp, "journal.log"), "wb")
jst = os.fstat(journal.fileno())
port_file = os.path.join(tmp, "notify.port")
p = subprocess.Popen([BIN, "serve", "-m", TINY, "--port", "0", "--port-file", port_file], stdout=journal, stderr=journal,
                     env=dict(os.environ, NOTIFY_SOCKET=sock_path, JOURNAL_STREAM=f"{jst.st_dev}:{jst.st_ino}"))
try:
    if linked:
        ready = ns.recv(4096)
        port = int(open(port_file).read())
        check(ready == b"READY=1" and request(port, "GET", "/health")[0] == 200,
              f"sd_notify: READY=1 once /health is ok ({ready})")
        post(port, {"prompt": "Hello", "max_tokens": 2})
        p.send_signal(signal.SIGTERM)
        check(ns.recv(4096) == b"STOPPING=1", "sd_notify: STOPPING=1 on SIGTERM")
    else:
        print("server: sd_notify not checked: this build has no libsystemd (tools/install-deps.sh installs it)")
        for _ in range(600):
            if os.path.exists(port_file) and open(port_file).read().strip() and \
                    request(int(open(port_file).read()), "GET", "/health")[0] == 200:
                break
            time.sleep(0.05)
        post(int(open(port_file).read()), {"prompt": "Hello", "max_tokens": 2})
        p.send_signal(signal.SIGTERM)
    check(p.wait(timeout=60) == 0, "under systemd: exit 0 on SIGTERM")
finally:
    if p.poll() is None:
        p.kill()
    ns.close()
    journal.close()
lines = open(os.path.join(tmp, "journal.log"), "rb").read().decode().splitlines()
check(lines and all(re.match(r"<[346]>", ln) for ln in lines) and any(re.match(r'<6>\{.*"status":200', ln) for ln in lines),
      f"the journal gets each line with its level ({lines[:4]})")
check(not open(os.path.join(tmp, "serve.log"), "rb").read().startswith(b"<"), "elsewhere, lines carry no level prefix")

# A short load: concurrent streams, each checked against its non-streamed text (the
# full 32-client, 60 s run is bench/load_test.py's default; its figure is in the README).
load_test(f"{BIN} serve -m {TINY} --slots 16", 12, 24, "12 concurrent streaming clients")

print(f"server: {results['pass']} passed, {results['fail']} failed")
if results["fail"]:
    print(f"server: the servers' logs are in {tmp}")
else:
    shutil.rmtree(tmp, ignore_errors=True)
sys.exit(1 if results["fail"] else 0)
