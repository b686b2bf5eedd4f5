#!/usr/bin/env python3
"""Seeds users with balances through the public API, for bench/run.sh.

For each user: POST /users (with a password), POST /users/tokens (signs it
in), then POST /billing/accounts/{id}/deposit with its token. Every tenth
user is "poor" (a small balance, so its orders soon start being rejected);
the rest are rich enough that their orders are always paid. Writes each
user's id and token (`id token` a line, mode 0600) to --tokens and a JSON
summary to stdout. Standard library only.
"""

import argparse
import http.client
import json
import os
import secrets
import sys
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

RICH = 1_000_000_000_000  # the largest amount one deposit may carry
POOR = 50_000  # 500.00: about one order's worth at the default prices


def balance_of(index: int) -> int:
    """The deposit for the index-th user (1-based); the same rule as the ceilings."""
    return POOR if index % 10 == 0 else RICH


class Client:
    def __init__(self, base: str):
        url = urllib.parse.urlsplit(base)
        self.host, self.port = url.hostname, url.port or 80
        self.conn = None

    def post(self, path: str, body: dict, token: str | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        for attempt in range(3):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                self.conn.request("POST", path, data, headers)
                res = self.conn.getresponse()
                payload = res.read()
                return res.status, json.loads(payload) if payload else {}
            except (ConnectionError, http.client.HTTPException):
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users-url", required=True)
    ap.add_argument("--billing-url", required=True)
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--tag", required=True, help="makes usernames unique to this run")
    ap.add_argument("--tokens", required=True, help="file to write the users' ids and tokens to")
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args()

    def seed_one(index: int) -> tuple[int, int, str]:
        users, billing = Client(args.users_url), Client(args.billing_url)
        name = f"bench{args.tag}u{index}"
        password = secrets.token_urlsafe(16)
        status, user = users.post("/users", {"username": name, "email": f"{name}@example.com", "password": password})
        if status != 201:
            raise RuntimeError(f"POST /users for {name}: {status} {user}")
        status, signed_in = users.post("/users/tokens", {"username": name, "password": password})
        if status != 200 or not signed_in.get("access_token"):
            raise RuntimeError(f"POST /users/tokens for {name}: {status} {signed_in}")
        token = signed_in["access_token"]
        amount = balance_of(index)
        status, receipt = billing.post(f"/billing/accounts/{user['id']}/deposit", {"amount": amount}, token)
        if status != 200 or receipt.get("balance") != amount:
            raise RuntimeError(f"deposit for user {user['id']}: {status} {receipt}")
        return user["id"], amount, token

    with ThreadPoolExecutor(args.workers) as pool:
        seeded = list(pool.map(seed_one, range(1, args.users + 1)))
    # The tokens act for their users: readable by the owner only.
    with open(os.open(args.tokens, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        for uid, _, token in seeded:
            f.write(f"{uid} {token}\n")
    json.dump(
        {
            "users": len(seeded),
            "poor_users": sum(1 for _, a, _ in seeded if a == POOR),
            "deposited_total": sum(a for _, a, _ in seeded),
            "deposits": len(seeded),
        },
        sys.stdout,
    )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
