"""A local HTTP/1.1 server for tests of gtmd's outbound calls: answers after a
delay, with a chosen size, or not at all; counts connections and requests."""
import http.server
import threading
import time
import urllib.parse


class Upstream:
    def __init__(self):
        outer = self
        self.connections = 0
        self.requests = []
        self.cond = threading.Condition()
        self.release = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with outer.cond:
                    outer.connections += 1
                    outer.cond.notify_all()

            def log_message(self, *a):
                pass

            def handle(self):
                try:
                    super().handle()
                except (ConnectionResetError, BrokenPipeError):
                    pass   # gtmd dropped the connection on purpose (size cap, timeout)

            def do_GET(self):
                try:
                    self.answer()
                except (BrokenPipeError, ConnectionResetError):
                    pass   # gtmd hung up on purpose (size cap, timeout)

            def answer(self):
                u = urllib.parse.urlparse(self.path)
                q = dict(urllib.parse.parse_qsl(u.query))
                with outer.cond:
                    outer.requests.append((u.path, q, dict(self.headers)))
                    outer.cond.notify_all()
                if u.path == "/slow":
                    time.sleep(int(q.get("ms", "1000")) / 1000.0)
                if u.path == "/hold":
                    outer.release.wait(30)
                if u.path == "/big":
                    n = int(q.get("n", "1000"))
                    body = b"x" * n
                    self.send_response(200)
                    if q.get("chunked"):
                        self.send_header("Transfer-Encoding", "chunked")
                        self.end_headers()
                        step = 65536
                        try:
                            for i in range(0, n, step):
                                part = body[i:i + step]
                                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                            self.wfile.write(b"0\r\n\r\n")
                        except (BrokenPipeError, ConnectionResetError):
                            pass
                        return
                    self.send_header("Content-Length", str(n))
                    self.end_headers()
                    try:
                        self.wfile.write(body)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return
                body = ("ok:%s" % q.get("i", "")).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Echo", self.headers.get("X-From", ""))
                self.end_headers()
                self.wfile.write(body)

        class Server(http.server.ThreadingHTTPServer):
            # the default backlog of 5 drops SYNs when many calls start at once
            request_queue_size = 1024

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def wait_requests(self, n, timeout=10):
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
