#!/usr/bin/python3
"""fake_hub.py -- a Hugging Face hub stand-in on loopback, for the download tests.

It answers like the real hub: GET/HEAD {repo}/resolve/{revision}/{file} with X-Repo-Commit,
ETag (the git blob SHA-1) for regular files, and for LFS files (*.safetensors, *.bin) a 302 to a
second "CDN" host with X-Linked-Etag (the SHA-256) and X-Linked-Size; 404 + X-Error-Code
EntryNotFound / RevisionNotFound, 401 RepositoryNotFound, 403 GatedRepo; a relative 307 for a
renamed repository. The CDN honours Range. Faults for tests are switched on through files in
the state folder: drop-once (close the connection halfway, once), drop-always, corrupt (flip
a byte). Every request is appended to state/requests.log as "host METHOD path auth range".

  fake_hub.py STATE_DIR REPO=FOLDER [REPO=FOLDER ...] [--private REPO] [--gated REPO]
              [--alias SHORT=REPO] [--token T]

Writes STATE_DIR/ports ("hub_port cdn_port") once both servers listen. Loopback only.
"""
import hashlib
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE = sys.argv[1]
REPOS, PRIVATE, GATED, ALIAS, TOKEN = {}, set(), set(), {}, "secret-token"
args = sys.argv[2:]
while args:
    a = args.pop(0)
    if a == "--private":
        PRIVATE.add(args.pop(0))
    elif a == "--gated":
        GATED.add(args.pop(0))
    elif a == "--alias":
        short, full = args.pop(0).split("=", 1)
        ALIAS[short] = full
    elif a == "--token":
        TOKEN = args.pop(0)
    else:
        name, folder = a.split("=", 1)
        REPOS[name] = folder

COMMITS = {name: hashlib.sha1(name.encode()).hexdigest() for name in REPOS}
BLOBS = {}  # sha256 -> path, for the CDN
LOCK = threading.Lock()
CDN_HOST = "127.0.0.2"


def log(host, handler):
    auth = "auth" if handler.headers.get("Authorization") else "-"
    rng = handler.headers.get("Range") or "-"
    with LOCK, open(os.path.join(STATE, "requests.log"), "a") as f:
        f.write(f"{host} {handler.command} {handler.path} {auth} {rng}\n")


def fault(name):
    return os.path.exists(os.path.join(STATE, name))


def file_info(path):
    data = open(path, "rb").read()
    git = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    return data, git, hashlib.sha256(data).hexdigest()


class Hub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, code, headers=(), body=b""):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.handle_resolve()

    def do_GET(self):
        self.handle_resolve()

    def handle_resolve(self):
        log("hub", self)
        path = self.path.split("?")[0]
        if "/resolve/" not in path:
            return self.reply(404)
        repo, rest = path[1:].split("/resolve/", 1)
        rev, _, fname = rest.partition("/")
        if repo in ALIAS:  # a renamed repository: a relative redirect
            return self.reply(307, [("Location", f"/{ALIAS[repo]}/resolve/{rest}")])
        if repo not in REPOS:
            return self.reply(401, [("X-Error-Code", "RepositoryNotFound")])
        authed = self.headers.get("Authorization") == f"Bearer {TOKEN}"
        if repo in PRIVATE and not authed:
            return self.reply(401, [("X-Error-Code", "RepositoryNotFound")])
        if repo in GATED and not authed:
            return self.reply(403, [("X-Error-Code", "GatedRepo")])
        commit = COMMITS[repo]
        if rev not in ("main", commit):
            return self.reply(404, [("X-Error-Code", "RevisionNotFound")])
        full = os.path.join(REPOS[repo], fname)
        if not fname or "/" in fname or not os.path.isfile(full):
            return self.reply(404, [("X-Error-Code", "EntryNotFound"), ("X-Repo-Commit", commit)])
        data, git, sha = file_info(full)
        if fname.endswith((".safetensors", ".bin")):  # LFS: metadata here, bytes on the CDN
            BLOBS[sha] = full
            cdn = f"http://{CDN_HOST}:{CDN_PORT}/lfs/{sha}?signed=1"
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode()
            ptr_sha = hashlib.sha1(b"blob %d\0" % len(pointer) + pointer).hexdigest()
            return self.reply(302, [("Location", cdn), ("X-Repo-Commit", commit), ("ETag", f'"{ptr_sha}"'),
                                    ("X-Linked-Etag", f'"{sha}"'), ("X-Linked-Size", str(len(data)))])
        return self.reply(200, [("X-Repo-Commit", commit), ("ETag", f'W/"{git}"')], data)


class Cdn(Hub):
    def handle_resolve(self):
        log("cdn", self)
        sha = self.path.split("?")[0].rsplit("/", 1)[-1]
        if sha not in BLOBS:
            return self.reply(404)
        data = open(BLOBS[sha], "rb").read()
        if fault("corrupt"):
            data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
        body = data[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        drop = fault("drop-always") or (fault("drop-once") and not fault("dropped"))
        if drop and len(body) > 1000:
            open(os.path.join(STATE, "dropped"), "w").close()
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)  # mid-file, as a failing network would
            return
        self.wfile.write(body)


class Quiet(ThreadingHTTPServer):
    """Clients that hang up on purpose (interrupted and fault-injected downloads) are
    expected here; a reset connection is not worth a traceback in the test log."""

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


hub = Quiet(("127.0.0.1", 0), Hub)
cdn = Quiet((CDN_HOST, 0), Cdn)
CDN_PORT = cdn.server_address[1]
threading.Thread(target=cdn.serve_forever, daemon=True).start()
with open(os.path.join(STATE, "ports.tmp"), "w") as f:
    f.write(f"{hub.server_address[1]} {CDN_PORT}\n")
os.rename(os.path.join(STATE, "ports.tmp"), os.path.join(STATE, "ports"))
hub.serve_forever()
