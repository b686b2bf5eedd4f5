#!/usr/bin/env python3
"""A local stand-in for the cluster's ingress controller, driven by the rendered Ingress.

It reads the Ingress objects that the Helm chart renders (as JSON) and routes every
request the way Kubernetes defines Ingress path matching for one host (by default
arch.homework): Exact and Prefix paths (Prefix matches whole path elements), the
longest match wins, Exact beats Prefix on a tie, and a path that matches no rule gets
404 like ingress-nginx's default backend. Each backend Service ("name:port") is mapped
to a local address by an upstreams file, so the chart's routing can be exercised
against the real binaries running on 127.0.0.1.

Method, path, query, headers and body are forwarded (hop-by-hop headers dropped, Host
set to the Ingress host, X-Forwarded-* added as ingress-nginx does); status, headers
and body come back. Every request is treated as addressed to --host, since clients
reach this proxy by IP:port. Only the Python standard library is used.

    python3 tests/helm/ingress_proxy.py --ingress ingress.json --upstreams upstreams.json \\
        --host arch.homework --listen 127.0.0.1:8080

ingress.json: a JSON list of Ingress objects (or a v1 List). upstreams.json: an object
mapping "<service>:<port number or port name>" to "host:port".
"""
from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterable
from urllib.parse import urlsplit

# RFC 9110 section 7.6.1: never forwarded in either direction.
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
UPSTREAM_TIMEOUT_S = 120


@dataclass(frozen=True)
class Route:
    path: str
    path_type: str  # "Exact" or "Prefix" (ImplementationSpecific is treated as Prefix)
    service: str
    port: str  # port number or port name, as written in the Ingress

    def matches(self, request_path: str) -> bool:
        if self.path_type == "Exact":
            return request_path == self.path
        return prefix_match(self.path, request_path)

    @property
    def backend(self) -> str:
        return f"{self.service}:{self.port}"


def prefix_match(prefix: str, request_path: str) -> bool:
    """Kubernetes Prefix matching: element-wise on '/'-separated parts, ignoring a trailing '/'."""
    want = [p for p in prefix.split("/") if p]
    have = [p for p in request_path.split("/") if p]
    return have[: len(want)] == want


def _objects(document) -> Iterable[dict]:
    if isinstance(document, list):
        for item in document:
            yield from _objects(item)
    elif isinstance(document, dict):
        if document.get("kind") == "List":
            yield from _objects(document.get("items", []))
        else:
            yield document


def _backend(backend: dict) -> tuple[str, str]:
    service = backend["service"]
    port = service.get("port", {})
    return service["name"], str(port.get("number", port.get("name", "")))


def routes_for_host(ingresses: Iterable[dict], host: str) -> tuple[list[Route], Route | None]:
    """The rules of every Ingress that apply to host, and a default backend if any."""
    routes: list[Route] = []
    default: Route | None = None
    for ingress in _objects(list(ingresses)):
        if ingress.get("kind") != "Ingress":
            continue
        spec = ingress.get("spec", {})
        if spec.get("defaultBackend") and default is None:
            name, port = _backend(spec["defaultBackend"])
            default = Route("/", "Prefix", name, port)
        for rule in spec.get("rules", []):
            rule_host = rule.get("host")
            if rule_host and not host_matches(rule_host, host):
                continue
            for p in rule.get("http", {}).get("paths", []):
                name, port = _backend(p["backend"])
                path_type = p.get("pathType", "Prefix")
                routes.append(
                    Route(p.get("path", "/"), "Exact" if path_type == "Exact" else "Prefix", name, port)
                )
    return routes, default


def host_matches(rule_host: str, host: str) -> bool:
    if rule_host.startswith("*."):
        # A wildcard covers exactly one more DNS label.
        suffix = rule_host[1:]
        return host.endswith(suffix) and "." not in host[: -len(suffix)]
    return rule_host == host


def choose(routes: list[Route], default: Route | None, request_path: str) -> Route | None:
    candidates = [r for r in routes if r.matches(request_path)]
    if not candidates:
        return default
    # Longest path first; on equal length an Exact rule beats a Prefix one.
    return max(candidates, key=lambda r: (len(r.path.rstrip("/")), r.path_type == "Exact"))


class Proxy(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, listen, routes, default, upstreams, host, quiet=False):
        super().__init__(listen, Handler)
        self.routes = routes
        self.default = default
        self.upstreams = upstreams
        self.ingress_host = host
        self.quiet = quiet


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Proxy

    def log_message(self, fmt, *args):  # one line per request, on stderr
        if not self.server.quiet:
            sys.stderr.write("ingress-proxy: " + (fmt % args) + "\n")

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline()
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # Trailer section, up to the empty line.
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _reply(self, status: int, body: bytes, content_type: str, extra=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _proxy(self):
        body = self._read_body()
        path = urlsplit(self.path).path or "/"
        route = choose(self.server.routes, self.server.default, path)
        if route is None:
            # What ingress-nginx's default backend answers for a path no rule routes.
            self._reply(404, b"404 page not found\n", "text/plain; charset=utf-8")
            return
        upstream = self.server.upstreams.get(route.backend)
        if upstream is None:
            self._reply(503, f"no endpoints for service {route.backend}\n".encode(), "text/plain; charset=utf-8")
            return

        connection_tokens = {t.strip().lower() for t in self.headers.get("Connection", "").split(",") if t.strip()}
        headers = []
        for name, value in self.headers.items():
            lower = name.lower()
            if lower in HOP_BY_HOP or lower in connection_tokens or lower in ("host", "content-length"):
                continue
            if lower.startswith("x-forwarded-") or lower == "x-real-ip":
                continue  # set below, as the ingress controller does
            headers.append((name, value))
        client_ip = self.client_address[0]
        headers += [
            ("Host", self.server.ingress_host),
            ("X-Real-IP", client_ip),
            ("X-Forwarded-For", client_ip),
            ("X-Forwarded-Host", self.server.ingress_host),
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Port", str(self.server.server_address[1])),
        ]
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers.append(("Content-Length", str(len(body))))

        host, _, port = upstream.rpartition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=UPSTREAM_TIMEOUT_S)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            conn.endheaders(body if body else None)
            response = conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as err:
            status = 504 if isinstance(err, socket.timeout) else 502
            self._reply(status, f"upstream {route.backend} ({upstream}): {err}\n".encode(), "text/plain; charset=utf-8")
            return
        finally:
            conn.close()

        self.send_response_only(response.status, response.reason)
        response_tokens = {
            t.strip().lower() for t in (response.getheader("Connection") or "").split(",") if t.strip()
        }
        for name, value in response.getheaders():
            lower = name.lower()
            if lower in HOP_BY_HOP or lower in response_tokens or lower == "content-length":
                continue
            self.send_header(name, value)
        no_body = self.command == "HEAD" or response.status in (204, 304) or 100 <= response.status < 200
        if no_body:
            length = response.getheader("Content-Length")
            if length is not None and response.status != 204:
                self.send_header("Content-Length", length)
        else:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if not no_body:
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _proxy


def load_ingresses(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return list(_objects(json.load(f)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ingress", required=True, help="JSON file with the rendered Ingress objects")
    parser.add_argument("--upstreams", required=True, help='JSON file: {"<service>:<port>": "host:port"}')
    parser.add_argument("--host", default="arch.homework", help="the Ingress host to answer for")
    parser.add_argument("--listen", default="127.0.0.1:8080", help="address to listen on")
    parser.add_argument("--quiet", action="store_true", help="no line per request")
    args = parser.parse_args(argv)

    routes, default = routes_for_host(load_ingresses(args.ingress), args.host)
    if not routes and default is None:
        print(f"ingress-proxy: no Ingress rule for host {args.host}", file=sys.stderr)
        return 2
    with open(args.upstreams, encoding="utf-8") as f:
        upstreams = json.load(f)
    missing = sorted({r.backend for r in routes} - set(upstreams))
    if missing:
        print(f"ingress-proxy: no upstream for {', '.join(missing)}", file=sys.stderr)
        return 2

    listen_host, _, listen_port = args.listen.rpartition(":")
    server = Proxy((listen_host, int(listen_port)), routes, default, upstreams, args.host, args.quiet)
    for r in sorted(routes, key=lambda r: r.path):
        print(f"ingress-proxy: {args.host}{r.path} ({r.path_type}) -> {r.backend} -> {upstreams[r.backend]}", file=sys.stderr)
    print(f"ingress-proxy: listening on http://{args.listen}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
