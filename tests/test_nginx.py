#!/usr/bin/python3
"""test_nginx.py BUILD_DIR REF_DIR [--seconds S] -- scale-out: nginx (Debian's) in front
of three `gpt2c serve` replicas on loopback, with contrib/nginx/gpt2c.conf as the README
documents it (only its ports changed).

24 streaming clients run for S seconds (60 by default) against nginx. At 35% of the run one
replica is killed (SIGKILL, mid-stream), at 55% it is started again on its port. Every stream
must either complete with the text a direct request for its seed gets, or end with a clean
error (HTTP error, an error event, or a connection cut before [DONE]: never a garbled or
silently truncated stream), and errors may only come from the kill. The other replicas must
carry the load meanwhile and the restarted one must receive requests again. Prints requests
served per replica (from nginx's log), errors, and the time to recover, then
"nginx: N passed, N failed". Skipped, with a message, where nginx is not installed or on a
sanitizer build (the plain build runs it).
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
SECONDS = float(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 60.0
BIN = os.path.abspath(os.path.join(BUILD, "gpt2c"))
MODEL = os.path.join(REF, "tiny-f32")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
KEY = "sk-nginx-test"
CLIENTS, SLOTS, SEEDS, MAX_TOKENS = 24, 8, 12, 48
PROMPTS = ["The history of the city begins", "In a shocking finding, scientists discovered",
           "Here is a recipe for", "The best way to learn a language is"]
results = {"pass": 0, "fail": 0}


def check(cond, what):
    results["pass" if cond else "fail"] += 1
    if not cond:
        print(f"FAIL: {what}", flush=True)


nginx = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.access(p, os.X_OK)), None)
if not nginx:
    print("nginx: skipped: nginx is not installed (tools/install-deps.sh installs it)")
    sys.exit(0)
if b"__asan_init" in open(BIN, "rb").read():  # gcc links the runtime, clang builds it in
    print(f"nginx: skipped in the sanitizer build {BUILD} (the plain build runs it)")
    sys.exit(0)
tmp = tempfile.mkdtemp(prefix="gpt2c-nginx-")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(port, path, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Authorization": "Bearer " + KEY})
        r = c.getresponse()
        return r.status, r.read()
    except OSError:
        return 0, b""
    finally:
        c.close()


def wait_health(port, seconds=30):
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        if get(port, "/health")[0] == 200:
            return True
        time.sleep(0.05)
    return False


def start_replica(port):
    log = open(os.path.join(tmp, f"replica-{port}.log"), "ab")
    p = subprocess.Popen([BIN, "serve", "-m", MODEL, "--port", str(port), "--api-key", KEY, "--slots", str(SLOTS),
                          "--threads", "1", "--quiet"], stdout=log, stderr=log)
    if not wait_health(port):
        raise RuntimeError(f"replica on port {port} did not start")
    return p


def body(seed, stream):
    return {"prompt": PROMPTS[seed % len(PROMPTS)], "max_tokens": MAX_TOKENS, "temperature": 0.9, "seed": seed,
            "stream": stream, "stream_options": {"include_usage": True} if stream else None}


def post(port, obj, timeout=120):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("POST", "/v1/completions", json.dumps(obj), {"Content-Type": "application/json", "Authorization": "Bearer " + KEY})
    return c, c.getresponse()


ports = [free_port() for _ in range(3)]
front = free_port()
replicas = [start_replica(p) for p in ports]
ngx = None
try:
    # The documented configuration with this test's ports, inside a main file that
    # keeps nginx's pid, logs and temporary files in the test's folder.
    conf = open(os.path.join(ROOT, "contrib", "nginx", "gpt2c.conf")).read()
    servers = re.findall(r"server 127\.0\.0\.1:(\d+)", conf)
    check(len(servers) == 3 and re.search(r"^\s*listen 8080;", conf, re.M), "contrib/nginx/gpt2c.conf: 3 replicas, listen 8080")
    for old, new in zip(servers, ports):
        conf = conf.replace(f"127.0.0.1:{old} ", f"127.0.0.1:{new} ")
    conf = re.sub(r"^(\s*)listen 8080;", rf"\1listen 127.0.0.1:{front};", conf, flags=re.M)
    open(os.path.join(tmp, "gpt2c.conf"), "w").write(conf)
    os.makedirs(os.path.join(tmp, "temp"))
    user = "user root root;\n" if os.geteuid() == 0 else ""  # workers keep access to the test's folder
    temps = "".join(f"    {k}_temp_path {tmp}/temp/{k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    open(os.path.join(tmp, "nginx.conf"), "w").write(
        f"{user}daemon off;\nworker_processes 2;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log warn;\n"
        f"events {{ worker_connections 1024; }}\n"
        f"http {{\n    log_format replicas '$msec $request_time $status \"$upstream_addr\" \"$upstream_status\" $request_uri';\n"
        f"    access_log {tmp}/access.log replicas;\n{temps}    include {tmp}/gpt2c.conf;\n}}\n")
    t = subprocess.run([nginx, "-t", "-p", tmp, "-e", f"{tmp}/error.log", "-c", f"{tmp}/nginx.conf"], capture_output=True, text=True)
    check(t.returncode == 0, f"nginx -t accepts the configuration: {t.stderr[-400:]}")
    ngx = subprocess.Popen([nginx, "-p", tmp, "-e", f"{tmp}/error.log", "-c", f"{tmp}/nginx.conf"],
                           stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "nginx.stderr"), "wb"))
    if not wait_health(front):
        raise RuntimeError("nginx did not answer: " + open(os.path.join(tmp, "error.log")).read()[-500:])

    # What each seed's stream must say: a direct, non-streamed request to one replica.
    expected = {}
    for seed in range(SEEDS):
        c, r = post(ports[0], body(seed, False))
        a = json.loads(r.read())
        c.close()
        expected[seed] = (a["choices"][0]["text"], a["usage"]["completion_tokens"])

    lock = threading.Lock()
    outcomes = []  # (start, end, kind, detail); kind: ok, cut, refused, error_event, garbled
    t0 = time.monotonic()
    stop_at = t0 + SECONDS

    def one_stream(seed):
        start = time.monotonic()
        kind, detail = "ok", ""
        try:
            c, r = post(front, body(seed, True))
            if r.status != 200:
                kind, detail = "refused", f"HTTP {r.status} {r.read()[:200]!r}"
            else:
                text, usage, done, err, buf = "", None, False, None, b""
                try:
                    # read1, not readline: http.client's readline takes a chunked
                    # body cut before its last chunk for a clean end, read1 raises.
                    while True:
                        data = r.read1(65536)
                        if not data:
                            break
                        buf += data
                        *lines, buf = buf.split(b"\n")
                        for line in lines:
                            if not line.startswith(b"data: "):
                                continue
                            payload = line[6:].strip()
                            if payload == b"[DONE]":
                                done = True
                                continue
                            ev = json.loads(payload)
                            if "error" in ev:
                                err = ev["error"].get("message")
                                continue
                            usage = ev.get("usage") or usage
                            for ch in ev.get("choices", []):
                                text += ch["text"]
                except (http.client.HTTPException, OSError) as e:
                    kind, detail = "cut", f"{type(e).__name__} after {len(text)} characters, done={done}"
                except ValueError as e:
                    kind, detail = "garbled", f"an event does not parse: {e}"
                if kind == "ok":
                    want, want_n = expected[seed]
                    if err is not None:
                        kind, detail = "error_event", err
                    elif not done or usage is None or text != want or usage["completion_tokens"] != want_n:
                        kind, detail = "garbled", f"seed {seed}: done={done} usage={usage} {text!r} vs {want!r}"
            c.close()
        except (http.client.HTTPException, OSError) as e:
            kind, detail = "cut", f"{type(e).__name__}: {e}"
        with lock:
            outcomes.append((start - t0, time.monotonic() - t0, kind, detail))

    def client(i):
        k = 0
        while time.monotonic() < stop_at:
            one_stream((i * 5 + k) % SEEDS)
            k += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for th in threads:
        th.start()
    # One replica dies mid-run and comes back on its port.
    time.sleep(SECONDS * 0.35)
    t_kill = time.monotonic() - t0
    replicas[1].kill()
    replicas[1].wait()
    time.sleep(SECONDS * 0.2)
    t_restart = time.monotonic() - t0
    replicas[1] = start_replica(ports[1])
    t_ready = time.monotonic() - t0
    for th in threads:
        th.join()

    # nginx's log: which replica served each completion (the last one tried).
    t_start_ngx = None
    served = []  # (start, end, replica index)
    failovers = 0  # completions that nginx passed on from one replica to another
    for line in open(os.path.join(tmp, "access.log")):
        m = re.match(r'(\S+) (\S+) (\d+) "([^"]*)" "([^"]*)" (\S+)', line)
        if not m or not m.group(6).startswith("/v1/completions") or m.group(3) != "200":
            continue
        end, dur = float(m.group(1)), float(m.group(2))
        tried = m.group(4).split(",")
        failovers += len(tried) > 1
        last = tried[-1].strip()
        if last.rsplit(":", 1)[-1].isdigit() and int(last.rsplit(":", 1)[-1]) in ports:
            served.append((end - dur, end, ports.index(int(last.rsplit(":", 1)[-1]))))
    # The log is on the wall clock; the clients' times on the monotonic one.
    shift = time.time() - time.monotonic() + t0
    served = [(s - shift, e - shift, k) for s, e, k in served]

    kinds = {}
    for o in outcomes:
        kinds[o[2]] = kinds.get(o[2], 0) + 1
    errors = [o for o in outcomes if o[2] not in ("ok",)]
    garbled = [o for o in outcomes if o[2] == "garbled"]
    per = {k: [sum(1 for s, e, x in served if x == k and lo <= s < hi) for lo, hi in
               ((0, t_kill), (t_kill, t_restart), (t_restart, SECONDS + 60))] for k in range(3)}
    back = [s for s, e, x in served if x == 1 and s >= t_restart]
    recover = (min(back) - t_restart) if back else None
    last_error = max((o[1] for o in errors), default=None)
    report = {"seconds": SECONDS, "clients": CLIENTS, "streams": len(outcomes), "outcomes": kinds,
              "served_per_replica_before_kill_down_after": per, "kill_s": round(t_kill, 1),
              "restart_s": round(t_restart, 1), "failovers": failovers, "restarted_ready_s": round(t_ready, 2),
              "first_request_on_restarted_after_s": round(recover, 2) if recover is not None else None,
              "last_error_after_kill_s": round(last_error - t_kill, 2) if last_error is not None else None}
    print("nginx:", json.dumps(report), flush=True)
    for o in errors[:10]:
        print(f"  {o[2]} at {o[1]:.2f} s (started {o[0]:.2f} s): {o[3]}")

    check(not garbled, f"no garbled or silently cut stream ({len(garbled)}: {garbled[:3]})")
    check(kinds.get("ok", 0) >= CLIENTS * 2, f"streams complete with the direct request's text ({kinds})")
    check(all(o[0] <= t_kill + 0.5 and o[1] >= t_kill - 0.5 and o[1] <= t_kill + 5 for o in errors),
          f"errors only from the kill: streams in flight on the killed replica ({errors[:3]})")
    check(len(errors) <= SLOTS + 4, f"at most the killed replica's streams fail ({len(errors)})")
    check(all(per[k][0] > 0 for k in range(3)), f"least_conn: every replica served before the kill ({per})")
    check(per[0][1] > 0 and per[2][1] > 0 and per[1][1] == 0,
          f"the two others carry the load while one is down ({per})")
    check(failovers >= 1, f"a request sent to the dead replica was passed to another ({failovers})")
    check(recover is not None and recover < 10, f"the restarted replica receives requests again (after {recover} s)")
finally:
    if ngx:
        ngx.send_signal(signal.SIGQUIT)  # graceful stop
        try:
            check(ngx.wait(timeout=30) == 0, "nginx stops cleanly")
        except subprocess.TimeoutExpired:
            ngx.kill()
            check(False, "nginx stops cleanly")
    for i, p in enumerate(replicas):
        p.send_signal(signal.SIGTERM)
        check(p.wait(timeout=60) == 0, f"replica {i} exits 0 on SIGTERM")

print(f"nginx: {results['pass']} passed, {results['fail']} failed")
if results["fail"]:
    print(f"nginx: its configuration and logs are in {tmp}")
else:
    shutil.rmtree(tmp, ignore_errors=True)
sys.exit(1 if results["fail"] else 0)
