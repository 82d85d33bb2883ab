"""Hostile clients (issue 6.2): slowloris, clients that never read, long
pipelines, half-closed sockets, TLS handshakes that stop midway and garbage on
the TLS port.  For each, while the attack runs, a normal client makes
sequential requests on fresh connections: every one must succeed within an
explicit p99 budget; the server's resident memory must stay under an explicit
bound; and the hostile connections must be dropped within the timeout that
applies to them.  Each case runs its own gtmd, so VmHWM is that case's peak.

The attackers run in a child process (this file with --attacker), so the
probe's latencies are not inflated by sharing Python's GIL with them.
The figures are printed to stdout at the end.
"""
import collections
import heapq
import itertools
import json
import math
import os
import random
import resource
import selectors
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import unittest
import uuid

import harness
from harness import Conn, Server, raw_request, request, sanitized

CERTS = os.environ.get("TLS_CERT_DIR", "")
EC = (os.path.join(CERTS, "ec-chain.pem"), os.path.join(CERTS, "ec-key.pem"))
LINGER_RST = struct.pack("ii", 1, 0)

# p99 budget of the normal client's requests under attack.  Calm, a request on
# a fresh connection takes about 0.2 ms here (4 ms over TLS: a full handshake
# each); 200 ms leaves room for a shared 2-core box whose other tenants and
# this test's attacker process compete for the CPU (scheduler slices of
# several ms, bursts), while a server that stalls behind its hostile clients
# shows up as seconds: every timeout in play is 3 s or more.
P99_BUDGET = 0.200
PROBES = 200      # at least this many normal requests under each attack
SLOW = getattr(harness, "SLOW", 1.0)    # harness's stretch factor (valgrind runs)
SANITIZED_SLOW = 3.0    # time bounds stretch this much more under ASan/valgrind (-O0, slow crypto)


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --------------------------------------------------------------------------
# The attacker (child process)
# --------------------------------------------------------------------------

def attacker(cfg):
    """Keeps cfg["n"] hostile connections to cfg["port"] (opened all at once,
    or cfg["rate"] a second).  Slot i connects and sends cfg["open"][i % len]
    (hex), then optionally half-closes ("shut_wr"), trickles cfg["trickle"]
    every cfg["interval"] seconds, and watches for the server closing it
    ("watch", default on).  A closed slot is opened again ("reopen_delay"
    seconds later) when "reconnect" is set, until stdin closes.  Prints JSON
    lines: {"ready"} once every slot was opened, {"cycled"} once every first
    connection has been closed, {"enough"} after cfg["enough"] closes, and
    {"done"} with the close times (per opening) once stdin closes."""
    raise_nofile(cfg["n"] + 256)
    port = cfg["port"]
    openings = [bytes.fromhex(h) for h in cfg["open"]]
    trickle = bytes.fromhex(cfg["trickle"]) if cfg.get("trickle") else b""
    interval = cfg.get("interval", 1.0)
    watch = cfg.get("watch", True)
    reconnect = cfg.get("reconnect", False)
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ, None)
    due = []                            # heap of (when, seq, sock or slot number to reopen)
    seq = itertools.count()
    reopen_delay = cfg.get("reopen_delay", 0.0)
    conns = {}                          # sock -> [slot, t_first, first bytes received, initial]
    drops = collections.defaultdict(list)       # kind -> [seconds from first byte sent to drop]
    answered = collections.defaultdict(int)     # kind -> drops preceded by bytes from the server
    heads = collections.defaultdict(collections.Counter)  # kind -> first 12 bytes received
    stats = {"opened": 0, "first_opened": 0, "connect_errors": 0, "send_errors": 0}
    initial_left = [0]
    to_open = [0]
    total = [0]

    def emit(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    def open_slot(slot, initial=False):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            s.connect(("127.0.0.1", port))
            t = time.monotonic()
            s.sendall(openings[slot % len(openings)])
            if cfg.get("shut_wr"):
                s.shutdown(socket.SHUT_WR)
        except OSError:
            stats["connect_errors"] += 1
            s.close()
            return
        s.setblocking(False)
        stats["opened"] += 1
        conns[s] = [slot, t, b"", initial]
        if initial:
            initial_left[0] += 1
            stats["first_opened"] += 1
        if watch:
            sel.register(s, selectors.EVENT_READ, s)
        if trickle:
            heapq.heappush(due, (t + interval, next(seq), s))

    def dropped(s, when):
        slot, t, head, initial = conns.pop(s)
        kind = slot % len(openings)
        drops[kind].append(when - t)
        total[0] += 1
        if total[0] == cfg.get("enough"):
            emit({"enough": total[0]})
        if head:
            answered[kind] += 1
            heads[kind][head[:12].decode("latin-1")] += 1
        if watch:
            sel.unregister(s)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        s.close()
        if initial:
            initial_left[0] -= 1
            if initial_left[0] == 0 and to_open[0] == 0:
                emit({"cycled": True})
        if reconnect:       # after this turn's closes are all noted
            heapq.heappush(due, (when + reopen_delay, next(seq), slot))

    rate = cfg.get("rate")      # first openings per second (None: all at once)
    if rate:
        t_start = time.monotonic()
        for slot in range(cfg["n"]):
            heapq.heappush(due, (t_start + slot / rate, next(seq), ("first", slot)))
        to_open[0] = cfg["n"]
    else:
        for slot in range(cfg["n"]):
            open_slot(slot, initial=True)
        emit({"ready": stats["first_opened"], "connect_errors": stats["connect_errors"]})

    running = True
    while running:
        now = time.monotonic()
        budget = 50         # openings per turn, so that closes are noticed promptly
        while due and due[0][0] <= now:
            if not isinstance(due[0][2], socket.socket):
                if budget == 0:
                    break
                budget -= 1
            _, _, s = heapq.heappop(due)
            if isinstance(s, int):
                if running:
                    open_slot(s)
                continue
            if isinstance(s, tuple):
                open_slot(s[1], initial=True)
                to_open[0] -= 1
                if to_open[0] == 0:
                    emit({"ready": stats["first_opened"], "connect_errors": stats["connect_errors"]})
                continue
            if s not in conns:
                continue
            try:
                s.send(trickle)
            except BlockingIOError:
                pass
            except OSError:
                stats["send_errors"] += 1
                dropped(s, time.monotonic())
                continue
            heapq.heappush(due, (now + interval, next(seq), s))
        timeout = min(0.2, max(0.0, due[0][0] - time.monotonic())) if due else 0.2
        events = sel.select(timeout)
        t_sel = time.monotonic()
        for key, _ in events:
            s = key.data
            if s is None:
                if not os.read(sys.stdin.fileno(), 4096):
                    running = False
                continue
            if s not in conns:
                continue
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                rec = conns[s]
                if len(rec[2]) < 12:
                    rec[2] += data[:12]
                continue
            dropped(s, t_sel)
    still = len(conns)
    for s in list(conns):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        s.close()
    emit({"done": True, "drops": {str(k): v for k, v in drops.items()},
          "answered": {str(k): v for k, v in answered.items()},
          "heads": {str(k): dict(v) for k, v in heads.items()},
          "still_open": still, **stats})


def pipeliner(cfg):
    """Rounds of cfg["n"] pipelined requests on one connection each, every
    answer checked in order, one round every cfg["every"] seconds, until
    stdin closes or a round fails.  Prints {"roundK": seconds} after each
    round and {"done"} with the rounds and the first error."""
    n = cfg["n"]
    reqs, expect = [], []
    for i in range(n):
        rid = "pl-%d" % i
        if i % 3 == 0:
            reqs.append(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\n\r\n" % rid.encode())
            expect.append((rid, 200, b'{"status":"ok"}'))
        elif i % 3 == 1:
            item = str(uuid.UUID(int=i))
            reqs.append(b"GET /fx/items/%s?q=%d HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\n\r\n"
                        % (item.encode(), i, rid.encode()))
            expect.append((rid, 200, item))
        else:
            body = json.dumps({"i": i}).encode()
            reqs.append(b"POST /fx/items HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\nContent-Type: "
                        b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (rid.encode(), len(body), body))
            expect.append((rid, 201, i))
    wire = b"".join(reqs)
    stop = threading.Event()

    def watch_stdin():
        while os.read(sys.stdin.fileno(), 4096):
            pass
        stop.set()
    threading.Thread(target=watch_stdin, daemon=True).start()

    rounds, error, secs = 0, None, []
    while error is None and (rounds == 0 or not stop.is_set()):
        t0 = time.monotonic()
        s = socket.create_connection(("127.0.0.1", cfg["port"]), 10)
        s.settimeout(20)
        sender = threading.Thread(target=s.sendall, args=(wire,), daemon=True)
        sender.start()
        buf = b""
        try:
            for rid, status, check in expect:
                while b"\r\n\r\n" not in buf:
                    chunk = s.recv(262144)
                    if not chunk:
                        raise EOFError("closed before %s" % rid)
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                hdrs = dict((k.strip().lower(), v.strip()) for k, v in (l.split(":", 1) for l in lines[1:]))
                clen = int(hdrs.get("content-length", "0"))
                while len(buf) < clen:
                    chunk = s.recv(262144)
                    if not chunk:
                        raise EOFError("body of %s cut" % rid)
                    buf += chunk
                body, buf = buf[:clen], buf[clen:]
                got = (hdrs.get("x-request-id"), int(lines[0].split()[1]))
                if got != (rid, status):
                    raise AssertionError("expected %s %d, got %s %d" % (rid, status, got[0], got[1]))
                if status == 200 and isinstance(check, bytes) and body != check:
                    raise AssertionError("%s: body %r" % (rid, body[:80]))
                if status == 200 and isinstance(check, str) and json.loads(body)["item_id"] != check:
                    raise AssertionError("%s: body %r" % (rid, body[:80]))
                if status == 201 and json.loads(body)["received"] != {"i": check}:
                    raise AssertionError("%s: body %r" % (rid, body[:80]))
        except (OSError, EOFError, AssertionError, ValueError, KeyError) as e:
            error = "round %d: %s" % (rounds, e)
        sender.join(20)
        s.close()
        secs.append(time.monotonic() - t0)
        rounds += 1
        sys.stdout.write(json.dumps({"round%d" % rounds: secs[-1]}) + "\n")
        sys.stdout.flush()
        stop.wait(max(0.0, cfg.get("every", 0.0) - secs[-1]))     # one round every "every" s
    sys.stdout.write(json.dumps({"done": True, "rounds": rounds, "error": error, "seconds": secs}) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------
# The test side
# --------------------------------------------------------------------------

class Attack:
    """The attacker child process, driven through its stdin/stdout."""

    def __init__(self, mode, cfg):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), mode, json.dumps(cfg)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.events = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.events.append(json.loads(line))
                self.cond.notify_all()
        with self.cond:
            self.events.append({"exited": True})
            self.cond.notify_all()

    def wait(self, key, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for e in self.events:
                    if key in e:
                        return e
                    if "exited" in e:
                        raise AssertionError("attacker exited before %r: %r" % (key, self.events))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("attacker: no %r within %.0f s: %r" % (key, timeout, self.events))
                self.cond.wait(left)

    def finish(self, timeout=30):
        self.proc.stdin.close()
        done = self.wait("done", timeout)
        self.proc.wait(10)
        return done

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.reader.join(5)
        self.proc.stdout.close()


def memory_kib(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def pct(values, p):
    v = sorted(values)
    return v[max(0, math.ceil(p / 100.0 * len(v)) - 1)]


def tls_client_ctx():
    ctx = ssl.create_default_context(cafile=os.path.join(CERTS, "ca-cert.pem"))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def client_hello():
    """The bytes of a real ClientHello (Python's OpenSSL), as a client sends them first."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    assert hello[0] == 0x16 and len(hello) > 100, hello[:8]
    return hello


FIGURES = collections.OrderedDict()


class HostileClientsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.environ.get("GTM_TEST_VALGRIND"):
            # thousands of connections against a server 20-50x slower: this
            # would measure valgrind; the ASan run covers memory errors here
            raise unittest.SkipTest("hostile-client load is not run under valgrind")

    def start_server(self, env, tls=False):
        e = {"GTM_SHUTDOWN_TIMEOUT": "2"}
        e.update(env)
        srv = Server(env=e, tls=EC if tls else None)
        self.addCleanup(srv.__exit__, None, None, None)
        srv.start()
        # time bounds: stretched for sanitized builds, where memory bounds are
        # not checked (their RSS is the sanitizer's)
        self.slow = SLOW * (SANITIZED_SLOW if sanitized(srv.proc.pid) else 1.0)
        return srv

    def attack(self, mode, cfg):
        a = Attack(mode, cfg)
        self.addCleanup(a.kill)
        return a

    def connections(self, srv):
        """Connections the server holds, not counting the admin one asking."""
        return request(srv, "GET", "/health/detailed", admin=True).json()["connections"] - 1

    def wait_connections(self, srv, pred, timeout):
        deadline = time.monotonic() + timeout
        while True:
            n = self.connections(srv)
            if pred(n) or time.monotonic() > deadline:
                return n
            time.sleep(0.05)

    def probe(self, srv, n=PROBES, tls=False):
        """n sequential requests on fresh connections; every one must succeed.
        Returns the latencies in seconds."""
        ctx = tls_client_ctx() if tls else None
        lat = []
        for i in range(n):
            t0 = time.monotonic()
            if i % 2:
                r = request(srv, "GET", "/health", tls_context=ctx)
                self.assertEqual((r.status, r.body), (200, b'{"status":"ok"}'))
            else:
                item = str(uuid.uuid4())
                r = request(srv, "GET", "/fx/items/" + item, tls_context=ctx)
                self.assertEqual(r.status, 200)
                self.assertEqual(r.json()["item_id"], item)
            lat.append(time.monotonic() - t0)
        return lat

    def probe_during(self, srv, attack, event, max_s, until=None, tls=False, what=None, batch=20):
        """Probes (in batches) until the attacker reports event (or until()
        holds) and at least PROBES were made; samples the connections held
        between batches as (seconds since start, count)."""
        t0 = time.monotonic()
        lat, attached = [], []
        while True:
            attached.append((time.monotonic() - t0, self.connections(srv)))
            lat += self.probe(srv, batch, tls=tls)
            if any("done" in e or "exited" in e for e in attack.events):
                self.fail("the attacker stopped early: %r" % attack.events[-3:])
            if len(lat) >= PROBES:
                if event and any(event in e for e in attack.events):
                    break
                if until and until():
                    break
            self.assertLess(time.monotonic() - t0, max_s, "waited %.0f s for %s (connections held: %s)"
                            % (max_s, what or event, attached[-5:]))
        return lat, attached

    def check_p99(self, name, calm, under):
        """The latency budget holds for real builds; under a sanitizer the
        figures are recorded only (ASan's allocator makes mbedTLS' bignum
        code 4x slower, so its latencies measure ASan)."""
        p99 = pct(under, 99)
        if self.slow == SLOW:
            self.assertLess(p99, P99_BUDGET * SLOW, "%s: p99 %.1f ms over the %.0f ms budget (calm %.1f ms)"
                            % (name, p99 * 1e3, P99_BUDGET * 1e3, pct(calm, 99) * 1e3))
        return {"calm_p99_ms": round(pct(calm, 99) * 1e3, 2), "p50_ms": round(pct(under, 50) * 1e3, 2),
                "p99_ms": round(p99 * 1e3, 2), "max_ms": round(max(under) * 1e3, 2)}

    def check_memory(self, name, srv, base, bound_mib):
        mem = memory_kib(srv.proc.pid)
        peak = mem["VmHWM"] / 1024.0
        if not sanitized(srv.proc.pid):
            self.assertLess(peak, bound_mib, "%s: peak RSS %.1f MiB over the %d MiB bound (%.1f MiB before)"
                            % (name, peak, bound_mib, base["VmRSS"] / 1024.0))
        return {"rss_before_mib": round(base["VmRSS"] / 1024.0, 1), "peak_rss_mib": round(peak, 1)}

    def check_drops(self, name, drops, timeout):
        """Seconds from a hostile connection's first byte to the server closing
        it: with a timeout, the timer did it (not before the timeout, and a
        deadline counted from anything later than the first byte would give
        up to twice the timeout); without, it was closed as soon as read.  A
        busy shared box delays the attacker noticing a close, hence p99 within
        1 s and the slowest within 2.5 s, not more."""
        if timeout:
            self.assertGreaterEqual(min(drops), timeout * 0.95, "%s: dropped before the timeout" % name)
        self.assertLess(pct(drops, 99), timeout + 1.0 * self.slow, "%s: p99 drop %.2f s" % (name, pct(drops, 99)))
        self.assertLess(max(drops), timeout + 2.5 * self.slow, "%s: slowest drop %.2f s" % (name, max(drops)))

    def stop_server(self, srv):
        self.assertEqual(srv.stop(), 0, "\n".join(srv.lines[-20:]))

    # ----------------------------------------------------------------------

    def test_1_slowloris(self):
        """2000 connections (opened 1000 a second) each send a request line and
        then one header byte a second, and reconnect when dropped.  Each is
        answered 408 and closed GTM_HEADER_TIMEOUT after its first byte (the
        trickle does not push the deadline back); meanwhile others are served."""
        timeout = 3.0
        n = 2000
        raise_nofile(2 * n + 512)
        srv = self.start_server({"GTM_HEADER_TIMEOUT": str(timeout)})
        calm = self.probe(srv)
        base = memory_kib(srv.proc.pid)
        a = self.attack("--attacker", {
            "port": srv.port, "n": n, "open": [b"GET /health HTTP/1.1\r\nHost: x\r\n".hex()],
            "trickle": b"X".hex(), "interval": 1.0, "reconnect": True, "rate": 1000})
        ready = a.wait("ready", 60)
        self.assertEqual(ready["ready"], n, ready)
        self.assertGreaterEqual(self.wait_connections(srv, lambda k: k >= n, 5), n)
        # probe until every first connection has been dropped (and replaced)
        under, attached = self.probe_during(srv, a, "cycled", timeout * 2 + 10 * self.slow)
        # a few may be between a drop and their reconnection
        self.assertGreaterEqual(min(c for _, c in attached), n * 0.9, attached)
        fig = self.check_p99("slowloris", calm, under)
        # Measured: 11 MiB idle, 35 MiB with the 2000 attached (~12 KiB each: the
        # request's header buffer pages, parser, timer).  Bound: 64 MiB.
        fig.update(self.check_memory("slowloris", srv, base, 64))
        done = a.finish()
        drops = done["drops"]["0"]
        self.assertGreaterEqual(len(drops), n)
        # every drop is the header timer: a 408, then the close
        self.assertEqual(done["answered"]["0"], len(drops), done["heads"])
        self.assertEqual(list(done["heads"]["0"]), ["HTTP/1.1 408"], done["heads"])
        self.check_drops("slowloris", drops, timeout)
        self.assertEqual(self.wait_connections(srv, lambda k: k == 0, 5), 0, "connections left after the attack")
        fig.update({"attached_min": min(c for _, c in attached), "dropped": len(drops),
                    "drop_s_min": round(min(drops), 2), "drop_s_p99": round(pct(drops, 99), 2),
                    "drop_s_max": round(max(drops), 2), "header_timeout_s": timeout})
        FIGURES["slowloris x%d" % n] = fig
        self.stop_server(srv)

    def test_2_never_read(self):
        """200 connections each pipeline 160 requests for GET /docs (13 KiB
        each, 2 MiB of answers) and one more every second, and never read.
        The kernel keeps at most CONN_NOTSENT_LOWAT (128 KiB) of a
        connection's output unsent, the server at most CONN_WRITE_CAP (64 KiB)
        plus the answer in hand (core/http/conn.c); past that it stops reading
        the connection, so the requests that follow cannot push the idle
        deadline back, and it closes it GTM_IDLE_TIMEOUT after its last
        answer.  (Before that fix the kernel took 2 MiB of answers per
        connection (its send buffer grows to 4 MiB) and each new request was
        read, answered and re-armed the idle timer: none of the 200 was
        closed.)"""
        idle = 3.0
        n = 200
        raise_nofile(2 * n + 512)
        srv = self.start_server({"GTM_IDLE_TIMEOUT": str(idle), "GTM_HEADER_TIMEOUT": "3"})
        calm = self.probe(srv)
        base = memory_kib(srv.proc.pid)
        one = b"GET /docs HTTP/1.1\r\nHost: x\r\n\r\n"
        a = self.attack("--attacker", {
            "port": srv.port, "n": n, "open": [(one * 160).hex()], "trickle": one.hex(), "interval": 1.0,
            "watch": False})
        ready = a.wait("ready", 60)
        t_ready = time.monotonic()
        self.assertEqual(ready["ready"], n, ready)
        under, attached = self.probe_during(srv, a, None, idle + 5 * self.slow,
                                            until=lambda: self.connections(srv) == 0,
                                            what="the server to close the never-reading clients")
        gone = time.monotonic() - t_ready
        # held until the idle timeout (the first ones connected a little before "ready")
        early = [c for t, c in attached if t < idle - 1.5]
        self.assertTrue(early and min(early) >= n, attached)
        self.assertLess(gone, idle + 3 * self.slow, "never-reading clients held %.1f s" % gone)
        fig = self.check_p99("never-read", calm, under)
        # Measured: 11 MiB idle, 26 MiB with the 200 (~75 KiB each: the answers
        # held back, at most 64 KiB + one of 13 KiB).  Bound: 48 MiB, where the
        # old 1 MiB cap allowed 200 MiB more.
        fig.update(self.check_memory("never-read", srv, base, 48))
        a.finish()
        fig.update({"attached_min_before_timeout": min(early), "all_dropped_after_s": round(gone, 2),
                    "idle_timeout_s": idle})
        FIGURES["never-read x%d" % n] = fig
        self.stop_server(srv)

    def test_3_pipeline(self):
        """Rounds of 5000 pipelined requests on one connection each (GET
        /health, GET /fx/items/{id}, POST /fx/items with a body), every answer
        checked in order, while the normal client is served."""
        srv = self.start_server({})
        calm = self.probe(srv)
        base = memory_kib(srv.proc.pid)
        a = self.attack("--pipeliner", {"port": srv.port, "n": 5000, "every": 0.5})
        under, _ = self.probe_during(srv, a, "round3", 60 * self.slow)
        fig = self.check_p99("pipeline", calm, under)
        # requests are parsed one at a time from at most 64 KiB of input, and
        # not while more than CONN_WRITE_CAP of answers wait: measured 11.5 MiB
        # (as idle).  Bound: 32 MiB.
        fig.update(self.check_memory("pipeline", srv, base, 32))
        done = a.finish(60)
        self.assertIsNone(done["error"], done)
        self.assertGreaterEqual(done["rounds"], 3)
        fig.update({"rounds": done["rounds"], "round_s_max": round(max(done["seconds"]), 2)})
        self.assertLess(max(done["seconds"]), 20 * self.slow)
        FIGURES["pipeline 5000 x%d rounds" % done["rounds"]] = fig
        self.stop_server(srv)

    def test_4_half_close(self):
        """shutdown(SHUT_WR) after a request: the answer still arrives, all of it
        even for a slow reader; after a partial request: the server closes at
        once (not at the header timeout).  Then 500 of each at a time, over and
        over, while the normal client is served."""
        header_timeout = 5.0
        srv = self.start_server({"GTM_HEADER_TIMEOUT": str(header_timeout), "GTM_BODY_TIMEOUT": "5"})
        docs = request(srv, "GET", "/docs").body
        self.assertGreater(len(docs), 10000)

        def half_closed(wire, rcvbuf=None):
            s = socket.socket()
            if rcvbuf:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            s.settimeout(10)
            s.connect(("127.0.0.1", srv.port))
            s.sendall(wire)
            s.shutdown(socket.SHUT_WR)
            return Conn(s), time.monotonic()

        # a whole request, then EOF: answered, then closed
        c, t0 = half_closed(raw_request("GET", "/health"))
        self.assertEqual(c.read_response().body, b'{"status":"ok"}')
        self.assertTrue(c.at_eof(2))
        self.assertLess(time.monotonic() - t0, 1.0 * self.slow)
        c.close()
        # 400 pipelined requests for 13 KiB answers (5 MiB), then EOF, from a
        # client that starts reading only once the server has answered the
        # first (so answers wait in the server): every byte arrives before the
        # close, also when the last request is cut short (that one is not
        # answered).  Regression: the EOF, read between two requests (or in
        # the cut-short one), closed the connection at once and dropped the
        # answers still queued (up to the 1 MiB cap then).
        for k, tail in enumerate((b"", b"GET /health HTTP/1.1\r\nHost: x\r\n")):
            c, t0 = half_closed(b"".join(raw_request("GET", "/docs", headers={"X-Request-Id": "hc%d-%d" % (k, i)})
                                         for i in range(400)) + tail, rcvbuf=4096)
            self.assertTrue(srv.wait_log(lambda rec: rec.get("req_id") == "hc%d-0" % k))
            for i in range(400):
                try:
                    r = c.read_response()
                except EOFError:
                    self.fail("closed after %d of the 400 answers (tail %r)" % (i, tail))
                self.assertEqual((r.status, r.header("x-request-id")), (200, "hc%d-%d" % (k, i)))
                self.assertEqual(r.body, docs)
            self.assertTrue(c.at_eof(2))
            self.assertEqual(c.buf, b"")
            c.close()
        # partial head, partial body: closed at once, nothing answered
        for wire in (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Partial: y",
                     b"POST /fx/items HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\":"):
            c, t0 = half_closed(wire)
            self.assertTrue(c.at_eof(header_timeout - 1))
            self.assertLess(time.monotonic() - t0, 1.0 * self.slow, wire)
            self.assertEqual(c.buf, b"", wire)
            c.close()

        calm = self.probe(srv)
        base = memory_kib(srv.proc.pid)
        n = 500
        raise_nofile(2 * n + 512)
        a = self.attack("--attacker", {
            "port": srv.port, "n": n, "shut_wr": True, "reconnect": True, "enough": 4 * n,
            "open": [raw_request("GET", "/health").hex(), b"GET /health HTTP/1.1\r\nHost: x".hex()]})
        self.assertEqual(a.wait("ready", 60)["ready"], n)
        under, _ = self.probe_during(srv, a, "enough", 60 * self.slow)
        fig = self.check_p99("half-close", calm, under)
        # each is gone at once: measured 12 MiB (as idle).  Bound: 32 MiB.
        fig.update(self.check_memory("half-close", srv, base, 32))
        done = a.finish()
        whole, partial = done["drops"]["0"], done["drops"]["1"]
        self.assertEqual(done["answered"]["0"], len(whole))
        self.assertEqual(list(done["heads"]["0"]), ["HTTP/1.1 200"], done["heads"])
        self.assertNotIn("1", done["answered"], done["heads"])
        # closed as soon as the server sees the EOF: well before any timer
        self.check_drops("half-close", whole + partial, 0)
        self.assertEqual(self.wait_connections(srv, lambda k: k == 0, 5), 0, "connections left after the attack")
        fig.update({"closed": len(whole) + len(partial), "close_s_p99": round(pct(whole + partial, 99), 3),
                    "close_s_max": round(max(whole + partial), 3)})
        FIGURES["half-close x%d at a time" % n] = fig
        self.stop_server(srv)

    def test_5_tls_handshake_stalled(self):
        """550 TLS connections: 500 send a ClientHello and then nothing, 50
        half of one.  Each is closed GTM_HEADER_TIMEOUT after it connected,
        while HTTPS clients are served, also while the 500 handshakes are
        being answered.  A full ClientHello costs the server an X25519 key
        and an ECDSA signature, 1.65 ms of CPU here (6 ms under ASan), so they
        come at 125 a second (a fifth of a core): all 500 at once would hold
        the loop ~0.8 s, and ~600 a second saturate a worker (see README)."""
        timeout = 6.0
        n = 550
        raise_nofile(2 * n + 512)
        srv = self.start_server({"GTM_HEADER_TIMEOUT": str(timeout)}, tls=True)
        calm = self.probe(srv, tls=True)
        base = memory_kib(srv.proc.pid)
        hello = client_hello()
        rate = 125.0
        if self.slow > SLOW:       # a sanitizer: the same for a third of the load
            n, rate = n // 3, rate / SANITIZED_SLOW
        a = self.attack("--attacker", {"port": srv.tls_port, "n": n, "rate": rate,
                                       "open": [hello.hex()] * 10 + [hello[:60].hex()]})
        # from the first ClientHello until the last connection is dropped
        under, attached = self.probe_during(srv, a, "cycled", n / rate + timeout + 10 * self.slow,
                                            tls=True, batch=5)
        self.assertEqual(a.wait("ready", 1)["ready"], n)
        # all held at once (the last is opened before the first one's timeout)
        self.assertGreaterEqual(max(c for _, c in attached), n * 0.95, attached)
        fig = self.check_p99("tls-stalled", calm, under)
        # an mbedTLS session (record buffers, handshake state) per connection:
        # measured 12 MiB idle, 3x MiB with the 550 (~38 KiB each).  Bound: 64 MiB.
        fig.update(self.check_memory("tls-stalled", srv, base, 64))
        done = a.finish()
        kinds = [str(k) for k in range(10)]
        full = [d for k in kinds for d in done["drops"][k]]
        half = done["drops"]["10"]
        self.assertGreaterEqual(len(full) + len(half), n)
        for k in kinds:      # the server's hello flight came back, then the close
            self.assertEqual(done["answered"][k], len(done["drops"][k]))
            self.assertTrue(all(h.startswith("\x16\x03\x03") for h in done["heads"][k]), done["heads"])
        self.assertNotIn("10", done["answered"], done["heads"])
        drops = full + half
        self.check_drops("tls-stalled", drops, timeout)
        self.assertEqual(self.wait_connections(srv, lambda k: k == 0, 5), 0, "connections left after the attack")
        fig.update({"attached_max": max(c for _, c in attached), "dropped": len(drops),
                    "drop_s_min": round(min(drops), 2), "drop_s_p99": round(pct(drops, 99), 2),
                    "drop_s_max": round(max(drops), 2), "header_timeout_s": timeout})
        FIGURES["tls handshake stalled x%d (%d/s)" % (n, rate)] = fig
        self.stop_server(srv)

    def test_6_tls_garbage(self):
        """Garbage on the TLS port, 100 connections at a time until 600 were
        closed: random bytes, a plaintext HTTP request, a handshake record
        that is not a ClientHello.  Each is closed as soon as it is read, far
        before GTM_HEADER_TIMEOUT, while HTTPS clients are served."""
        n = 100
        raise_nofile(2 * n + 512)
        srv = self.start_server({"GTM_HEADER_TIMEOUT": "5"}, tls=True)
        calm = self.probe(srv, tls=True)
        base = memory_kib(srv.proc.pid)
        rnd = random.Random(6)
        junk = bytes([rnd.randrange(0, 20)]) + bytes(rnd.randrange(256) for _ in range(999))
        a = self.attack("--attacker", {
            "port": srv.tls_port, "n": n, "reconnect": True, "reopen_delay": 0.5, "enough": 6 * n,
            "open": [junk.hex(), raw_request("GET", "/health").hex(),
                     bytes([0x16, 0x03, 0x01, 0x00, 0x04, 0x63, 0x00, 0x00, 0x00]).hex()]})
        self.assertEqual(a.wait("ready", 60)["ready"], n)
        under, _ = self.probe_during(srv, a, "enough", 60 * self.slow, tls=True)
        fig = self.check_p99("tls-garbage", calm, under)
        # each is gone at once: measured 14 MiB (12 idle).  Bound: 32 MiB.
        fig.update(self.check_memory("tls-garbage", srv, base, 32))
        done = a.finish()
        drops = [d for k in ("0", "1", "2") for d in done["drops"][k]]
        self.assertGreaterEqual(len(drops), 6 * n)
        self.check_drops("tls-garbage", drops, 0)
        self.assertEqual(self.wait_connections(srv, lambda k: k == 0, 5), 0, "connections left after the attack")
        fig.update({"closed": len(drops), "close_s_p99": round(pct(drops, 99), 3),
                    "close_s_max": round(max(drops), 3)})
        FIGURES["tls garbage, %d at a time" % n] = fig
        self.stop_server(srv)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--attacker":
        attacker(json.loads(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "--pipeliner":
        pipeliner(json.loads(sys.argv[2]))
    else:
        prog = unittest.main(verbosity=2, exit=False)
        if FIGURES:
            print("\nhostile-client figures:")
            for name, fig in FIGURES.items():
                print("  %s: %s" % (name, json.dumps(fig)))
        sys.exit(0 if prog.result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
