"""A real OCI registry for the tests: Debian's docker-registry (the distribution registry) on
127.0.0.1, plain HTTP, TLS with a CA made here, or htpasswd basic auth; images pushed with
`skopeo copy`. Every request it serves is in its access log, which `requests()` reads."""
import base64
import hashlib
import http.client
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse

import pytest

REGISTRY = "/usr/bin/docker-registry"
USER, PASSWORD = "tester", "s3cret:pw"


def require_tools():
    missing = [t for t in (REGISTRY, "skopeo", "openssl", "htpasswd") if shutil.which(t) is None]
    if missing:
        pytest.fail("registry tests need %s (tools/deps.sh test)" % ", ".join(missing),
                    pytrace=False)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_ca(d):
    """A CA and a server certificate for 127.0.0.1 signed by it; returns (ca.crt, cert, key)."""
    os.makedirs(d, exist_ok=True)

    def ssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)
    ca_key, ca_crt = os.path.join(d, "ca.key"), os.path.join(d, "ca.crt")
    key, csr, crt = (os.path.join(d, n) for n in ("server.key", "server.csr", "server.crt"))
    ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", ca_key, "-out", ca_crt, "-days", "2", "-subj", "/CN=layerfs test CA")
    ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    ext = os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ssl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
        "-out", crt, "-days", "2", "-extfile", ext)
    return ca_crt, crt, key


class Registry:
    def __init__(self, base, tls=False, htpasswd=False, token=None):
        require_tools()
        self.base = str(base)
        self.tls = tls
        self.htpasswd = htpasswd
        self.token = token  # a TokenServer
        self.data = os.path.join(self.base, "data")
        self.log_path = os.path.join(self.base, "registry.log")
        self.proc = None
        self.port = None
        self.cert_dir = None  # a --cert-dir with the CA, for TLS
        self.server_cert = None
        os.makedirs(self.data, exist_ok=True)
        if tls:
            ca, self.server_cert, self.server_key = make_ca(os.path.join(self.base, "pki"))
            self.cert_dir = os.path.join(self.base, "certs")
            os.makedirs(self.cert_dir, exist_ok=True)
            shutil.copy(ca, os.path.join(self.cert_dir, "ca.crt"))
        if htpasswd:
            self.htpasswd_file = os.path.join(self.base, "htpasswd")
            with open(self.htpasswd_file, "w") as f:
                subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], stdout=f, check=True)

    @property
    def host(self):
        return "127.0.0.1:%d" % self.port

    def name(self, repo):
        return "docker://%s/%s" % (self.host, repo)

    def config(self):
        lines = ["version: 0.1",
                 "log:", "  level: info", "  formatter: json",
                 "storage:", "  filesystem:", "    rootdirectory: " + self.data,
                 "  delete:", "    enabled: true",
                 "http:", "  addr: " + self.host]
        if self.tls:
            lines += ["  tls:", "    certificate: " + self.server_cert,
                      "    key: " + self.server_key]
        if self.htpasswd:
            lines += ["auth:", "  htpasswd:", "    realm: layerfs-test",
                      "    path: " + self.htpasswd_file]
        if self.token:
            lines += self.token.config()
        return "\n".join(lines) + "\n"

    def start(self):
        for _ in range(5):
            if self.port is None:
                self.port = free_port()
            cfg = os.path.join(self.base, "config.yml")
            with open(cfg, "w") as f:
                f.write(self.config())
            log = open(self.log_path, "a")
            self.proc = subprocess.Popen([REGISTRY, "serve", cfg], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            deadline = time.time() + 15
            while time.time() < deadline and self.proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                    return self
                except OSError:
                    time.sleep(0.05)
            self.stop()
            self.port = None  # taken meanwhile: another port
        pytest.fail("docker-registry did not start:\n" + self.log(), pytrace=False)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def requests(self):
        """[(method, path, bytes written, status)] of every request served so far."""
        out = []
        for line in self.log().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("msg") != "response completed" or "http.request.uri" not in entry:
                continue
            out.append((entry.get("http.request.method"), entry["http.request.uri"],
                        int(entry.get("http.response.written", 0)),
                        int(entry.get("http.response.status", 0))))
        return out

    def tls_args(self, direction=None):
        prefix = "--%s-" % direction if direction else "--"
        if self.tls:
            return [prefix + "cert-dir", self.cert_dir]
        return [prefix + "tls-verify=false"]

    def push(self, source, repo):
        """skopeo copy SOURCE (a transport:path name) docker://HOST/REPO."""
        argv = ["skopeo", "copy", "--quiet", *self.tls_args("dest")]
        if self.htpasswd or self.token:
            argv += ["--dest-creds", "%s:%s" % (USER, PASSWORD)]
        r = subprocess.run(argv + [source, self.name(repo)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.fail("skopeo copy %s failed:\n%s" % (source, r.stderr), pytrace=False)
        return self.name(repo)

    def manifest_digest(self, repo):
        argv = ["skopeo", "inspect", "--raw", *self.tls_args()]
        if self.htpasswd:
            argv += ["--creds", "%s:%s" % (USER, PASSWORD)]
        raw = subprocess.run(argv + [self.name(repo)], capture_output=True, check=True).stdout
        return "sha256:" + hashlib.sha256(raw).hexdigest()

    def blob_file(self, digest):
        hexd = digest.split(":", 1)[1]
        return os.path.join(self.data, "docker/registry/v2/blobs/sha256", hexd[:2], hexd, "data")


def blob_gets(requests):
    return [r for r in requests if r[0] == "GET" and re.search(r"/blobs/sha256:", r[1])]


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """The token service of a registry configured with `auth: token`: issues RS256 tokens signed
    with a key made here (its certificate in the token's x5c header and in the registry's
    rootcertbundle) for the scopes asked, to USER:PASSWORD only. Setting `expire_next` makes the
    next token one that has already expired, as a token that lapses mid-mount has."""

    SERVICE, ISSUER = "layerfs-test-registry", "layerfs-test-issuer"

    def __init__(self, base):
        self.base = str(base)
        os.makedirs(self.base, exist_ok=True)
        self.key = os.path.join(self.base, "token.key")
        self.cert = os.path.join(self.base, "token.crt")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        self.key, "-out", self.cert, "-days", "2", "-subj", "/CN=layerfs token"],
                       check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", self.cert, "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.expire_next = False
        self.issued = []  # (user or None, scope) of every token request
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                user = None
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                    if (user, password) != (USER, PASSWORD):
                        self.send_response(401)
                        self.end_headers()
                        return
                scopes = query.get("scope", [])
                with server.lock:
                    server.issued.append((user, " ".join(scopes)))
                    expired, server.expire_next = server.expire_next, False
                body = json.dumps({"token": server.sign(user, scopes, expired),
                                   "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a client that gave up on a hung request

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def realm(self):
        return "http://127.0.0.1:%d/token" % self.port

    def sign(self, user, scopes, expired):
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) == 3 and parts[0] == "repository" and user is not None:
                access.append({"type": "repository", "name": parts[1],
                               "actions": parts[2].split(",")})
        now = int(time.time()) - (600 if expired else 0)
        claims = {"iss": self.ISSUER, "sub": user or "", "aud": self.SERVICE,
                  "exp": now + 300, "nbf": now - 10, "iat": now - 10,
                  "jti": os.urandom(8).hex(), "access": access}
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing_input = (_b64url(json.dumps(header).encode()) + "." +
                         _b64url(json.dumps(claims).encode()))
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key],
                             input=signing_input.encode(), check=True,
                             capture_output=True).stdout
        return signing_input + "." + _b64url(sig)

    def config(self):
        return ["auth:", "  token:", "    realm: " + self.realm,
                "    service: " + self.SERVICE, "    issuer: " + self.ISSUER,
                "    rootcertbundle: " + self.cert]

    def stop(self):
        self.hang = None
        self.httpd.shutdown()
        self.httpd.server_close()


class FaultProxy:
    """An HTTP proxy in front of a registry that answers some requests itself first: `faults`
    maps a substring of the path to the statuses to answer its first requests with (503, 429,
    …); `corrupt` is a substring of the paths whose answers get one byte changed (a registry that
    lies); `redirect` is a substring of the paths answered with a 307 to the registry itself (as
    registries send blob GETs to object storage). While `hang` is a substring of a path, its
    requests get no answer until hang is cleared (a registry that stops answering). Everything
    else is passed to the registry as it is. `seen` lists (method, path, status) of every
    request."""

    def __init__(self, target, faults=None, corrupt=None, redirect=None):
        self.target = target
        self.faults = {k: list(v) for k, v in (faults or {}).items()}
        self.corrupt = corrupt
        self.redirect = redirect
        self.hang = None
        self.seen = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def answer(self, status, headers, body):
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def handle_any(self):
                while proxy.hang and proxy.hang in self.path:
                    time.sleep(0.05)
                if proxy.redirect and proxy.redirect in self.path:
                    with proxy.lock:
                        proxy.seen.append((self.command, self.path, 307))
                    self.answer(307, [("Location", "http://%s%s" % (proxy.target, self.path))],
                                b"")
                    return
                with proxy.lock:
                    for key, statuses in proxy.faults.items():
                        if key in self.path and statuses:
                            status = statuses.pop(0)
                            proxy.seen.append((self.command, self.path, status))
                            break
                    else:
                        status = None
                if status is not None:
                    self.answer(status, [("Retry-After", "0")], b"")
                    return
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection(proxy.target, timeout=30)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                r = conn.getresponse()
                data = r.read()
                conn.close()
                if proxy.corrupt and proxy.corrupt in self.path and data:
                    data = bytes([data[0] ^ 0x01]) + data[1:]
                with proxy.lock:
                    proxy.seen.append((self.command, self.path, r.status))
                self.answer(r.status, r.getheaders(), data)

            do_GET = do_HEAD = do_PUT = do_POST = handle_any

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a client that gave up on a hung request

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self):
        return "127.0.0.1:%d" % self.port

    def stop(self):
        self.hang = None
        self.httpd.shutdown()
        self.httpd.server_close()
