#!/usr/bin/python3
"""Open N TCP connections to a server and hold them open, idle.

With --request PATH each connection first sends one complete HTTP/1.1
keep-alive request and reads its answer, so the server holds real keep-alive
connections rather than connections that have not sent anything yet.

Prints one line "ready held=H failed=F non2xx=X seconds=S" once the
connections are open, then holds them until SIGTERM/SIGINT, until stdin
closes (with --stdin), or until --max-seconds pass; then prints
"done held=H closed_by_peer=C" and exits 0. Connections are closed with RST
(SO_LINGER 0), so many runs in a row do not exhaust ports in TIME_WAIT.
Exit status 1 when not a single connection could be opened.

Standard library only; run it with /usr/bin/python3.
"""
import argparse
import os
import resource
import selectors
import signal
import socket
import struct
import sys
import time

LINGER_RST = struct.pack("ii", 1, 0)


class Stop(Exception):
    pass


def on_signal(signum, frame):
    raise Stop()


def raise_nofile(need):
    """Raise RLIMIT_NOFILE to at least `need` if possible; return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return soft
    if hard != resource.RLIM_INFINITY and hard < need:
        try:  # works as root, up to fs.nr_open
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            return need
        except (ValueError, OSError):
            need = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return need


def response_complete(buf):
    """True once buf holds a whole HTTP response (Content-Length or chunked)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = buf[:end].decode("latin-1").lower()
    body = len(buf) - end - 4
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if name == "content-length":
            try:
                return body >= int(value)
            except ValueError:
                return True
        if name == "transfer-encoding" and "chunked" in value:
            return buf.endswith(b"0\r\n\r\n")
    return True  # no body framing: the head is all there is to wait for


def open_batch(args, count, request):
    """Open `count` connections; with a request, exchange it on each.
    Returns (open sockets, connect failures, non-2xx answers, last error)."""
    socks, failed, non2xx, err = [], 0, 0, None
    for _ in range(count):
        s = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET,
                          socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        s.settimeout(args.connect_timeout)
        try:
            s.connect((args.host, args.port))
        except OSError as e:
            failed += 1
            err = e
            s.close()
            continue
        socks.append(s)
    if not request:
        return socks, failed, non2xx, err

    sel = selectors.DefaultSelector()
    bufs = {}
    for s in socks:
        try:
            s.sendall(request)
        except OSError as e:
            failed += 1
            err = e
            s.close()
            continue
        s.setblocking(False)
        bufs[s] = b""
        sel.register(s, selectors.EVENT_READ)
    deadline = time.monotonic() + args.response_timeout
    ok = []
    while bufs and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=max(0.0, deadline - time.monotonic())):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                data, err = b"", e
            if not data:  # closed before answering
                failed += 1
                sel.unregister(s)
                del bufs[s]
                s.close()
                continue
            bufs[s] += data
            if response_complete(bufs[s]):
                status = bufs[s][9:12]
                if not status.startswith(b"2"):
                    non2xx += 1
                sel.unregister(s)
                del bufs[s]
                ok.append(s)
    for s in list(bufs):  # no full answer in time
        failed += 1
        err = TimeoutError("no complete response within %ss" % args.response_timeout)
        sel.unregister(s)
        s.close()
    sel.close()
    return ok, failed, non2xx, err


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-n", "--connections", type=int, default=10000)
    ap.add_argument("--request", metavar="PATH",
                    help="send one keep-alive GET PATH on each connection and read the answer")
    ap.add_argument("--batch", type=int, default=250,
                    help="connections opened (and requests exchanged) per round")
    ap.add_argument("--connect-timeout", type=float, default=5.0)
    ap.add_argument("--response-timeout", type=float, default=10.0)
    ap.add_argument("--open-seconds", type=float, default=60.0,
                    help="stop opening more connections after this long")
    ap.add_argument("--max-seconds", type=float, default=600.0,
                    help="exit after holding this long at most")
    ap.add_argument("--stdin", action="store_true",
                    help="also exit when stdin closes")
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    limit = raise_nofile(args.connections + 64)
    if limit < args.connections + 16:
        print(f"warning: RLIMIT_NOFILE is {limit}; fewer than {args.connections} "
              "connections will open", file=sys.stderr, flush=True)

    request = None
    if args.request:
        hostport = f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}"
        request = (f"GET {args.request} HTTP/1.1\r\nHost: {hostport}\r\n"
                   "Connection: keep-alive\r\nUser-Agent: hold_conns\r\n\r\n").encode()

    socks, failed, non2xx, err = [], 0, 0, None
    t0 = time.monotonic()
    try:
        while len(socks) + failed < args.connections:
            if time.monotonic() - t0 > args.open_seconds:
                failed += args.connections - len(socks) - failed
                err = TimeoutError(f"gave up opening after {args.open_seconds}s")
                break
            n = min(args.batch, args.connections - len(socks) - failed)
            ok, f, x, e = open_batch(args, n, request)
            socks += ok
            failed += f
            non2xx += x
            err = e or err
            if not ok and f:  # a whole round failed: the server is not taking more
                failed = args.connections - len(socks)
                break
    except Stop:
        print(f"done held={len(socks)} closed_by_peer=0 (stopped while opening)", flush=True)
        return 0 if socks else 1

    print(f"ready held={len(socks)} failed={failed} non2xx={non2xx} "
          f"seconds={time.monotonic() - t0:.2f}", flush=True)
    if err is not None and failed:
        print(f"last error: {err!r}", file=sys.stderr, flush=True)
    if not socks:
        return 1

    # Hold: watch for the server closing connections, and for stdin closing.
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    if args.stdin:
        sel.register(sys.stdin.fileno(), selectors.EVENT_READ, data="stdin")
    closed = 0
    deadline = time.monotonic() + args.max_seconds
    try:
        while time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1.0):
                if key.data == "stdin":
                    if not os.read(key.fd, 4096):
                        raise Stop()
                    continue
                s = key.fileobj
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    closed += 1
                    sel.unregister(s)
                    s.close()
    except Stop:
        pass
    print(f"done held={len(socks)} closed_by_peer={closed}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
