"""The local ingress stand-in (tests/helm/ingress_proxy.py), against echo upstreams and
the chart's rendered Ingress: routing, and faithful forwarding both ways."""
from __future__ import annotations

import http.client
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import ingress_proxy
from chartlib import INGRESS_HOST, RELEASE, SERVICES, render


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _echo(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append((self.command, self.path))
        payload = json.dumps({
            "upstream": self.server.name,
            "method": self.command,
            "path": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body_hex": body.hex(),
        }).encode()
        status = int(self.headers.get("X-Echo-Status", "200"))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Request-Id", self.headers.get("X-Request-Id", "generated"))
        self.send_header("Location", "/users/42")
        self.send_header("Set-Cookie", "a=1")
        self.send_header("Set-Cookie", "b=2")
        if status in (204, 304):
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.headers.get("X-Echo-Chunked"):
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(payload), 1000):
                chunk = payload[i:i + 1000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _echo


def start(server):
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


@pytest.fixture(scope="module")
def proxy():
    rendered = render()
    upstreams, servers = {}, []
    for component in SERVICES:
        server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
        server.daemon_threads = True
        server.name, server.seen = component, []
        start(server)
        servers.append(server)
        for key in (f"{RELEASE}-{component}:http", f"{RELEASE}-{component}:8080"):
            upstreams[key] = f"127.0.0.1:{server.server_address[1]}"
    routes, default = ingress_proxy.routes_for_host(rendered.of_kind("Ingress"), INGRESS_HOST)
    p = ingress_proxy.Proxy(("127.0.0.1", 0), routes, default, upstreams, INGRESS_HOST, quiet=True)
    start(p)
    yield p, {s.name: s for s in servers}
    p.shutdown()
    p.server_close()
    for s in servers:
        s.shutdown()
        s.server_close()


def call(proxy, method, path, body=None, headers=None, chunked=False):
    conn = http.client.HTTPConnection("127.0.0.1", proxy.server_address[1], timeout=10)
    try:
        if chunked:
            conn.putrequest(method, path)
            for k, v in (headers or {}).items():
                conn.putheader(k, v)
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            for i in range(0, len(body), 7000):
                piece = body[i:i + 7000]
                conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            conn.send(b"0\r\n\r\n")
        else:
            conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response, response.read()
    finally:
        conn.close()


@pytest.mark.parametrize("path,component", [
    ("/users", "user-service"),
    ("/users/42?verbose=1", "user-service"),
    ("/billing/accounts/42/transactions", "billing-service"),
    ("/orders?user_id=42", "order-service"),
    ("/notifications?user_id=42", "notification-service"),
    ("/docs/users/", "user-service"),
    ("/docs/billing/openapi.json", "billing-service"),
    ("/docs/orders/", "order-service"),
    ("/docs/notifications/swagger-ui.css", "notification-service"),
])
def test_routes_like_the_rendered_ingress(proxy, path, component):
    p, _ = proxy
    response, body = call(p, "GET", path)
    assert response.status == 200
    echo = json.loads(body)
    assert echo["upstream"] == component
    assert echo["path"] == path, "path and query reach the service unchanged"


@pytest.mark.parametrize("method,path", [
    ("POST", "/internal/billing/accounts"),
    ("POST", "/internal/billing/accounts/1/withdraw"),
    ("POST", "/internal/notifications"),
    ("GET", "/health/ready"),
    ("GET", "/health/live"),
    ("GET", "/metrics"),
    ("GET", "/"),
    ("GET", "/usersx"),
    ("GET", "/docs/"),
])
def test_unrouted_paths_never_reach_a_service(proxy, method, path):
    p, servers = proxy
    before = {name: len(s.seen) for name, s in servers.items()}
    response, _ = call(p, method, path, body=b"{}" if method == "POST" else None,
                       headers={"Content-Type": "application/json"} if method == "POST" else None)
    assert response.status == 404
    assert {name: len(s.seen) for name, s in servers.items()} == before


def test_forwards_method_headers_and_body_and_returns_status_headers_and_body(proxy):
    p, _ = proxy
    body = bytes(range(256)) * 400  # 100 KiB, every byte value
    response, raw = call(p, "POST", "/users?x=1&y=%20z", body=body, headers={
        "Content-Type": "application/json",
        "Idempotency-Key": "key-1",
        "X-Request-Id": "req-123",
        "X-Echo-Status": "201",
        "Connection": "keep-alive",
    })
    assert response.status == 201
    assert response.getheader("Location") == "/users/42"
    assert response.getheader("X-Request-Id") == "req-123"
    assert response.getheader("Content-Type") == "application/json"
    assert [v for k, v in response.getheaders() if k.lower() == "set-cookie"] == ["a=1", "b=2"]
    echo = json.loads(raw)
    assert echo["method"] == "POST" and echo["path"] == "/users?x=1&y=%20z"
    assert bytes.fromhex(echo["body_hex"]) == body
    headers = {k.lower(): v for k, v in echo["headers"]}
    assert headers["idempotency-key"] == "key-1"
    assert headers["x-request-id"] == "req-123"
    assert headers["content-type"] == "application/json"
    assert headers["host"] == INGRESS_HOST
    assert headers["x-forwarded-host"] == INGRESS_HOST
    assert headers["content-length"] == str(len(body))
    assert "connection" not in headers or headers["connection"].lower() != "keep-alive"


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "OPTIONS", "GET"])
def test_forwards_every_method(proxy, method):
    p, _ = proxy
    response, raw = call(p, method, "/orders/1")
    assert response.status == 200
    assert json.loads(raw)["method"] == method


def test_head_and_no_content(proxy):
    p, _ = proxy
    response, raw = call(p, "HEAD", "/orders/1")
    assert response.status == 200 and raw == b""
    response, raw = call(p, "DELETE", "/orders/1", headers={"X-Echo-Status": "204"})
    assert response.status == 204 and raw == b""


def test_chunked_bodies_both_ways(proxy):
    p, _ = proxy
    body = b'{"amount": 100}' * 2000
    response, raw = call(p, "POST", "/billing/accounts/1/deposit", body=body,
                         headers={"Content-Type": "application/json", "X-Echo-Chunked": "1"}, chunked=True)
    assert response.status == 200
    assert response.getheader("Content-Length") == str(len(raw))
    assert bytes.fromhex(json.loads(raw)["body_hex"]) == body


def test_upstream_down_is_a_502():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    routes = [ingress_proxy.Route("/users", "Prefix", "u", "http")]
    p = start(ingress_proxy.Proxy(("127.0.0.1", 0), routes, None, {"u:http": f"127.0.0.1:{dead}"}, INGRESS_HOST, quiet=True))
    try:
        response, _ = call(p, "GET", "/users/1")
        assert response.status == 502
    finally:
        p.shutdown()
        p.server_close()


def test_path_matching_rules():
    r = ingress_proxy.Route
    routes = [
        r("/foo", "Prefix", "prefix-foo", "80"),
        r("/foo/bar", "Prefix", "prefix-foobar", "80"),
        r("/foo/bar", "Exact", "exact-foobar", "80"),
        r("/aaa/bb/", "Prefix", "aaa-bb", "80"),
    ]
    choose = lambda path: (ingress_proxy.choose(routes, None, path) or r("", "", "none", "")).service
    assert choose("/foo") == "prefix-foo"
    assert choose("/foo/") == "prefix-foo"
    assert choose("/foo/baz") == "prefix-foo"
    assert choose("/foo/bar") == "exact-foobar"
    assert choose("/foo/bar/") == "prefix-foobar"
    assert choose("/foo/barx") == "prefix-foo"
    assert choose("/foox") == "none"
    assert choose("/aaa/bb") == "aaa-bb"
    assert choose("/aaa/bbb") == "none"
    assert ingress_proxy.host_matches("*.homework", "arch.homework")
    assert not ingress_proxy.host_matches("*.homework", "a.arch.homework")
