"""A loopback HTTP proxy in front of the AWS stand-in that counts calls by operation.

Operations are read from `X-Amz-Target` (JSON protocols such as Secrets Manager) or
the `Action=` form field (query protocols such as STS). GET /__counts returns the
counts as JSON; POST /__counts/reset zeroes them (and the times). GET /__times?op=OP returns
the arrival times (Unix seconds) of every call of OP since the last reset.
"""
import http.client
import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UPSTREAM = None
COUNTS = {}
TIMES = {}
LOCK = threading.Lock()


def operation(headers, body):
    target = headers.get("X-Amz-Target")
    if target:
        return target.split(".")[-1]
    try:
        form = urllib.parse.parse_qs(body.decode())
        return form.get("Action", ["?"])[0]
    except UnicodeDecodeError:
        return "?"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, a reused keep-alive
    # connection stalls ~40 ms on the client's delayed ACK, which is the proxy's cost,
    # not the daemon's.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def reply(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def forward(self):
        if self.path.startswith("/__counts"):
            with LOCK:
                if self.command == "POST":
                    COUNTS.clear()
                    TIMES.clear()
                body = json.dumps(COUNTS).encode()
            return self.reply(200, body, [("Content-Type", "application/json")])
        if self.path.startswith("/__times"):
            op = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get("op", [""])[0]
            with LOCK:
                body = json.dumps(TIMES.get(op, [])).encode()
            return self.reply(200, body, [("Content-Type", "application/json")])
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        op = operation(self.headers, body)
        with LOCK:
            COUNTS[op] = COUNTS.get(op, 0) + 1
            TIMES.setdefault(op, []).append(time.time())
        conn = http.client.HTTPConnection(*UPSTREAM, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "host")}
        headers["Host"] = f"{UPSTREAM[0]}:{UPSTREAM[1]}"
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            out = [(k, v) for k, v in resp.getheaders() if k.lower() not in ("connection", "content-length", "transfer-encoding")]
            self.reply(resp.status, data, out)
        except (BrokenPipeError, ConnectionResetError):
            raise
        except OSError as e:
            self.reply(502, str(e).encode())
        finally:
            conn.close()

    def handle(self):
        # A client that gave up (its own timeout) is not the proxy's error.
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_POST = do_PUT = do_DELETE = forward


if __name__ == "__main__":
    listen_port, upstream_port = int(sys.argv[1]), int(sys.argv[2])
    UPSTREAM = ("127.0.0.1", upstream_port)
    server = ThreadingHTTPServer(("127.0.0.1", listen_port), Handler)
    server.daemon_threads = True
    server.serve_forever()
