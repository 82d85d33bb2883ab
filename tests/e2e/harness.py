"""Drives the real gtmd binary for end-to-end tests.

Every server a test talks to runs on 127.0.0.1, is started by the test and
stopped by it.  Readiness and log expectations are awaited as events (log
lines on gtmd's stderr), never guessed with sleeps.
"""
import json
import os
import signal
import socket
import subprocess
import random
import threading
import time

GTMD = os.environ.get("GTMD", "")
FX_MODULE_DIR = os.environ.get("FX_MODULE_DIR", "")
# GTM_TEST_VALGRIND=1 runs every server under memcheck (deploy/valgrind.sh):
# an invalid access or a definite/indirect leak makes it exit 97, which fails
# the test that stops it; waits are stretched by GTM_TEST_SLOW.
VALGRIND = ["valgrind", "--quiet", "--error-exitcode=97", "--leak-check=full",
            "--show-leak-kinds=definite,indirect", "--errors-for-leak-kinds=definite,indirect",
            "--track-origins=no", "--child-silent-after-fork=no", "--vgdb=no",
            "--suppressions=" + os.path.join(os.path.dirname(os.path.abspath(__file__)), "valgrind.supp")] \
    if os.environ.get("GTM_TEST_VALGRIND") else []
SLOW = float(os.environ.get("GTM_TEST_SLOW", "1"))


def abi_version():
    """(major, minor) as include/gtm/module.h declares them."""
    header = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "include", "gtm", "module.h")
    found = {}
    with open(header) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "#define" and parts[1] in ("GTM_ABI_MAJOR", "GTM_ABI_MINOR"):
                found[parts[1]] = int(parts[2])
    return found["GTM_ABI_MAJOR"], found["GTM_ABI_MINOR"]


_ports = random.Random(os.getpid() ^ time.monotonic_ns())


def free_port():
    """A port nobody holds now, below the kernel's ephemeral range: outbound
    connections (libpq, clients, providers) take ephemeral ports, and one of
    them could otherwise grab the port between this choice and the bind."""
    low = 20000
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = min(low, int(f.read().split()[0]) - 1000)
    except (OSError, ValueError, IndexError):
        pass
    for _ in range(200):
        port = _ports.randrange(max(low - 12000, 1024), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError("no free port below %d" % low)


def sanitized(pid):
    """True when the process runs under ASan or valgrind: its RSS says nothing then."""
    try:
        with open("/proc/%d/maps" % pid) as f:
            maps = f.read()
    except OSError:
        return True
    return "libasan" in maps or "vgpreload" in maps


class Server:
    """One gtmd process.  Use as a context manager or call start()/stop()."""

    def __init__(self, env=None, tls=None, module_dir=None, args=()):
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.admin_port = free_port()
        # Only what the test asks for: the runner's DATABASE_URL points at an
        # unmigrated cluster that a server not meant to use a database must not see.
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("GTM_", "CORS_")) and k != "DATABASE_URL"}
        self.env["GTM_LISTEN"] = "127.0.0.1:%d" % self.port
        self.env["GTM_ADMIN_LISTEN"] = "127.0.0.1:%d" % self.admin_port
        self.env["GTM_MODULE_DIR"] = module_dir if module_dir is not None else FX_MODULE_DIR
        self.env["GTM_WORKERS"] = "1"
        # ports the harness chose may be re-chosen if another test took one first
        self.own_ports = {"GTM_LISTEN", "GTM_ADMIN_LISTEN", "GTM_TLS_LISTEN"} - set(env or ())
        if tls:
            self.env["GTM_TLS_LISTEN"] = "127.0.0.1:%d" % self.tls_port
            self.env["GTM_TLS_CERT"], self.env["GTM_TLS_KEY"] = tls
        if env:
            self.env.update(env)
        self.args = list(args)
        self.lines = []
        self.cond = threading.Condition()
        self.proc = None
        self.exit_code = None

    # --- life cycle ---
    def start(self, expect_ready=True, timeout=15):
        for attempt in range(3):
            try:
                return self._start(expect_ready, timeout)
            except AssertionError:
                taken = any("address already in use" in l for l in self.lines)
                if not (taken and self.own_ports and attempt < 2):
                    raise
            self._repick_ports()

    def _repick_ports(self):
        for attr, var in (("port", "GTM_LISTEN"), ("admin_port", "GTM_ADMIN_LISTEN"), ("tls_port", "GTM_TLS_LISTEN")):
            if var in self.own_ports and getattr(self, attr):
                setattr(self, attr, free_port())
                self.env[var] = "127.0.0.1:%d" % getattr(self, attr)
        self.lines = []

    def _start(self, expect_ready, timeout):
        self.proc = subprocess.Popen(VALGRIND + [GTMD] + self.args, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if expect_ready:
            want = (2 if self.tls_port else 1) + (self.env.get("GTM_ADMIN_LISTEN") != "off")
            ok = self.wait_for(lambda: sum("listening on" in l for l in self.lines) >= want or
                               self.proc.poll() is not None, timeout)
            if not ok or self.proc.poll() is not None:
                if self.proc.poll() is None:
                    self.proc.kill()
                self.proc.wait()
                self._reader.join(5)
                self.proc.stdout.close()
                self.proc.stderr.close()
                raise AssertionError("gtmd did not start:\n" + "\n".join(self.lines))
            if VALGRIND and self.env.get("DATABASE_URL"):
                self._warm_up()
        return self

    def _warm_up(self, limit=60):
        """Under memcheck the pool's first SCRAM handshakes can outlast its
        connect timeout on a busy machine, and the pool then answers 503 until
        its next attempt: tests written for a warm server wait for /ready
        (bounded; a database meant to be unreachable just stays 503)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and self.proc.poll() is None:
            if any("serving anyway" in l for l in self.lines):
                return      # the database was unreachable at start-up, as the test wants
            try:
                if request(self, "GET", "/ready").status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)   # readiness polled, as a load balancer would

    def _read(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, pred, timeout=10):
        deadline = time.monotonic() + timeout * SLOW
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return True

    def wait_exit(self, timeout=20):
        self.exit_code = self.proc.wait(timeout * SLOW)
        self._reader.join(5)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.exit_code

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait_exit(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self._reader.join(5)
            self.proc.stdout.close()
            self.proc.stderr.close()

    # --- logs ---
    def records(self):
        out = []
        with self.cond:
            lines = list(self.lines)
        for l in lines:
            try:
                out.append(json.loads(l))
            except ValueError:
                out.append({"raw": l})
        return out

    def wait_log(self, pred, timeout=10):
        def found():
            for l in self.lines:
                try:
                    rec = json.loads(l)
                except ValueError:
                    continue
                if pred(rec):
                    return True
            return False
        return self.wait_for(found, timeout)

    # --- clients ---
    def connect(self, tls_context=None, timeout=10, admin=False):
        port = self.admin_port if admin else self.tls_port if tls_context else self.port
        s = socket.create_connection(("127.0.0.1", port), timeout)
        if tls_context:
            s = tls_context.wrap_socket(s, server_hostname="localhost")
        return s


class Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (lower-case name, value)
        self.body = body

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def header_all(self, name):
        return [v for k, v in self.headers if k == name.lower()]

    def json(self):
        return json.loads(self.body)


class Conn:
    """A raw HTTP/1.1 connection that reads responses exactly, so tests can
    pipeline, half-close and look at every byte."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("latin-1")

    def read_response(self, head=False):
        status_line = self._line()
        parts = status_line.split(" ", 2)
        status = int(parts[1])
        headers = []
        while True:
            line = self._line()
            if line == "":
                break
            k, v = line.split(":", 1)
            headers.append((k.strip().lower(), v.strip()))
        resp = Response(status, parts[2] if len(parts) > 2 else "", headers, b"")
        if head or status in (100, 204, 304):
            return resp
        if (resp.header("transfer-encoding") or "").lower() == "chunked":
            while True:
                size = int(self._line().split(";")[0], 16)
                while len(self.buf) < size + 2:
                    self._fill()
                resp.body += self.buf[:size]
                self.buf = self.buf[size + 2:]
                if size == 0:
                    return resp
        n = int(resp.header("content-length") or 0)
        while len(self.buf) < n:
            self._fill()
        resp.body, self.buf = self.buf[:n], self.buf[n:]
        return resp

    def at_eof(self, timeout=5):
        """True when the server closes the connection (with nothing more sent)."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        self.buf += data
        return data == b""

    def close(self):
        self.sock.close()


def request(srv, method, path, body=None, headers=None, tls_context=None, admin=False):
    """One request on a fresh connection (to the admin listener with admin=True); returns a Response."""
    s = srv.connect(tls_context, admin=admin)
    c = Conn(s)
    try:
        c.send(raw_request(method, path, body, headers))
        return c.read_response(head=(method == "HEAD"))
    finally:
        c.close()


def raw_request(method, path, body=None, headers=None, close=False):
    h = {"Host": "127.0.0.1"}
    if headers:
        h.update(headers)
    if body is not None:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
        h["Content-Length"] = str(len(body))
    if close:
        h["Connection"] = "close"
    head = "%s %s HTTP/1.1\r\n" % (method, path) + "".join("%s: %s\r\n" % kv for kv in h.items()) + "\r\n"
    return head.encode("latin-1") + (body or b"")
