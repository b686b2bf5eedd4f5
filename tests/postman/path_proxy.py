#!/usr/bin/env python3
"""A tiny path-routing reverse proxy that stands in for the Kubernetes Ingress in tests.

It routes the public prefixes to the four services exactly as the Ingress does and never
exposes the internal API, so the Postman collection can run against the separate service
binaries through one base URL:

    /users, /docs/users                  -> user-service
    /billing, /docs/billing              -> billing-service
    /orders, /docs/orders                -> order-service
    /notifications, /docs/notifications  -> notification-service
    /internal/...  and anything else     -> 404 (application/problem+json)

Method, path, query, headers and body are forwarded; status, headers and body come back.
Only the Python standard library is used.

    python3 tests/postman/path_proxy.py --listen 127.0.0.1:8080 \\
        --user http://127.0.0.1:8081 --billing http://127.0.0.1:8082 \\
        --order http://127.0.0.1:8083 --notification http://127.0.0.1:8084
"""
import argparse
import http.client
import json
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Hop-by-hop headers (RFC 9110 section 7.6.1) are not forwarded in either direction.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}

UPSTREAM_TIMEOUT = 60.0


def build_routes(args):
    """(prefix, upstream) pairs, longest prefix first."""
    targets = {
        "user": (args.user, ["/users", "/docs/users"]),
        "billing": (args.billing, ["/billing", "/docs/billing"]),
        "order": (args.order, ["/orders", "/docs/orders"]),
        "notification": (args.notification, ["/notifications", "/docs/notifications"]),
    }
    routes = []
    for name, (url, prefixes) in targets.items():
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "http" or not parsed.hostname:
            sys.exit(f"path_proxy: --{name} must be an http://host:port URL, got {url!r}")
        upstream = (parsed.hostname, parsed.port or 80)
        routes += [(prefix, upstream) for prefix in prefixes]
    routes.sort(key=lambda route: len(route[0]), reverse=True)
    return routes


def matches(path, prefix):
    """True when the path is the prefix itself or lies below it (segment-wise)."""
    return path == prefix or path.startswith(prefix + "/")


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "path-proxy"
    routes = []

    def log_message(self, fmt, *args):  # one line per request on stderr
        sys.stderr.write("path_proxy: %s %s\n" % (self.address_string(), fmt % args))

    def route(self):
        path = urllib.parse.urlsplit(self.path).path
        if matches(path, "/internal"):
            return None
        for prefix, upstream in self.routes:
            if matches(path, prefix):
                return upstream
        return None

    def send_plain(self, status, title, detail):
        body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/problem+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else None

    def forward(self):
        body = self.read_body()
        upstream = self.route()
        if upstream is None:
            self.send_plain(404, "Not Found", f"no public route for {urllib.parse.urlsplit(self.path).path}")
            return
        headers = {}
        for key, value in self.headers.items():
            if key.lower() in HOP_BY_HOP:
                continue
            headers[key] = value
        if body is not None:
            headers["Content-Length"] = str(len(body))
        client_ip = self.client_address[0]
        previous = self.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{previous}, {client_ip}" if previous else client_ip
        headers["X-Forwarded-Host"] = self.headers.get("Host", "")
        headers["X-Forwarded-Proto"] = "http"
        host, port = upstream
        conn = http.client.HTTPConnection(host, port, timeout=UPSTREAM_TIMEOUT)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as err:
            self.send_plain(502, "Bad Gateway", f"upstream {host}:{port} failed: {err}")
            return
        finally:
            conn.close()
        self.log_request(response.status)
        self.send_response_only(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() in HOP_BY_HOP or key.lower() == "content-length":
                continue
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = forward


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8080", help="host:port to listen on")
    parser.add_argument("--user", required=True, help="user-service base URL")
    parser.add_argument("--billing", required=True, help="billing-service base URL")
    parser.add_argument("--order", required=True, help="order-service base URL")
    parser.add_argument("--notification", required=True, help="notification-service base URL")
    args = parser.parse_args()
    Proxy.routes = build_routes(args)
    host, _, port = args.listen.rpartition(":")
    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Proxy)
    server.daemon_threads = True
    sys.stderr.write(f"path_proxy: listening on http://{args.listen}\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
