#!/usr/bin/env python3
"""Seeds users with balances through the public API, for bench/run.sh.

POST /users, then POST /billing/accounts/{id}/deposit for each user. Every
tenth user is "poor" (a small balance, so its orders soon start being
rejected); the rest are rich enough that their orders are always paid.
Writes the user ids (one a line) to --ids and a JSON summary to stdout.
Standard library only.
"""

import argparse
import http.client
import json
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

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        data = json.dumps(body).encode()
        for attempt in range(3):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                self.conn.request("POST", path, data, {"Content-Type": "application/json"})
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
    ap.add_argument("--ids", required=True, help="file to write the user ids to")
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args()

    def seed_one(index: int) -> tuple[int, int]:
        users, billing = Client(args.users_url), Client(args.billing_url)
        name = f"bench{args.tag}u{index}"
        status, user = users.post("/users", {"username": name, "email": f"{name}@example.com"})
        if status != 201:
            raise RuntimeError(f"POST /users for {name}: {status} {user}")
        amount = balance_of(index)
        status, receipt = billing.post(f"/billing/accounts/{user['id']}/deposit", {"amount": amount})
        if status != 200 or receipt.get("balance") != amount:
            raise RuntimeError(f"deposit for user {user['id']}: {status} {receipt}")
        return user["id"], amount

    with ThreadPoolExecutor(args.workers) as pool:
        seeded = list(pool.map(seed_one, range(1, args.users + 1)))
    with open(args.ids, "w") as f:
        for uid, _ in seeded:
            f.write(f"{uid}\n")
    json.dump(
        {
            "users": len(seeded),
            "poor_users": sum(1 for _, a in seeded if a == POOR),
            "deposited_total": sum(a for _, a in seeded),
            "deposits": len(seeded),
        },
        sys.stdout,
    )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
