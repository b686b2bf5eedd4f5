// A client of the four services written against the types openapi-typescript generates
// from openapi/*.yaml (into ./generated/typescript/), with openapi-fetch. Type-checked, not
// run, by tests/stages/20-openapi.sh (tsc --noEmit): each call below must compile, and each
// line under @ts-expect-error must not, so types that were too loose fail the check too.
import createClient from "openapi-fetch";
import type * as billing from "./generated/typescript/billing-service";
import type * as notification from "./generated/typescript/notification-service";
import type * as order from "./generated/typescript/order-service";
import type * as user from "./generated/typescript/user-service";

type Problem = user.components["schemas"]["Problem"];
type Letter = notification.components["schemas"]["LetterBody"];

// With a token (from POST /users/tokens) every call acts for its user.
const options = (baseUrl: string, token?: string) => ({
  baseUrl,
  headers: token === undefined ? {} : { Authorization: `Bearer ${token}` },
});

export function clients(baseUrl: string, token?: string) {
  return {
    users: createClient<user.paths>(options(baseUrl, token)),
    accounts: createClient<billing.paths>(options(baseUrl, token)),
    orders: createClient<order.paths>(options(baseUrl, token)),
    letters: createClient<notification.paths>(options(baseUrl, token)),
  };
}

export function describe(status: order.components["schemas"]["OrderStatus"]): string {
  switch (status) {
    case "pending": case "cancelling": return "in progress";
    case "paid": case "rejected": case "cancelled": return "decided";
    default: { const unknown: never = status; return unknown; }
  }
}

export async function placeAnOrder(baseUrl: string, username: string, password: string): Promise<Letter[] | Problem> {
  const anonymous = clients(baseUrl);
  const created = await anonymous.users.POST("/users", {
    body: { username, email: `${username}@example.com`, password, phone: null },
  });
  if (created.error) return created.error;
  const userId: number = created.data.id;
  const signedIn = await anonymous.users.POST("/users/tokens", { body: { username, password } });
  if (signedIn.error) return signedIn.error;
  const bearer: "Bearer" | string = signedIn.data.token_type;
  const expiresIn: number = signedIn.data.expires_in;
  console.log(bearer, expiresIn);
  const { accounts, orders, letters } = clients(baseUrl, signedIn.data.access_token);
  const lastName: string | null = created.data.last_name;

  const deposit = await accounts.POST("/billing/accounts/{user_id}/deposit", {
    params: { path: { user_id: userId }, header: { "X-Request-Id": `top-up-${username}` } },
    body: { amount: 1000, reference: `top-up-${username}` },
  });
  if (deposit.error) return deposit.error;
  const placed = await orders.POST("/orders", {
    params: { header: { "Idempotency-Key": `order-${username}` } },
    body: { user_id: userId, price: deposit.data.balance },
  });
  if (placed.error) return placed.error;
  const reason: "insufficient_funds" | "payment_refused" | null = placed.data.failure_reason;
  console.log(lastName, describe(placed.data.status), reason);

  const ledger = await accounts.GET("/billing/accounts/{user_id}/transactions", { params: { path: { user_id: userId } } });
  const kinds: billing.components["schemas"]["EntryKind"][] = (ledger.data ?? []).map((entry) => entry.kind);
  console.log(kinds, ledger.error?.request_id);

  const mail = await letters.GET("/notifications", { params: { query: { user_id: userId } } });
  return mail.error ?? mail.data;
}

export function refusedByTheTypes(baseUrl: string) {
  const { users, accounts, orders, letters } = clients(baseUrl);
  // @ts-expect-error a user needs an e-mail
  void users.POST("/users", { body: { username: "no_email", password: "long enough" } });
  // @ts-expect-error a user needs a password
  void users.POST("/users", { body: { username: "no_password", email: "a@b.co" } });
  // @ts-expect-error signing in needs the password
  void users.POST("/users/tokens", { body: { username: "someone" } });
  // @ts-expect-error the account's user id is a required path parameter
  void accounts.GET("/billing/accounts/{user_id}", {});
  // @ts-expect-error money is an integer number of minor units, never a string
  void accounts.POST("/billing/accounts/{user_id}/deposit", { params: { path: { user_id: 1 } }, body: { amount: "10" } });
  // @ts-expect-error an order names its user
  void orders.POST("/orders", { body: { price: 400 } });
  // @ts-expect-error no such route
  void orders.GET("/orders/{id}/receipt", { params: { path: { id: 1 } } });
  // @ts-expect-error a list of letters needs user_id
  void letters.GET("/notifications", {});
  // @ts-expect-error statuses are a closed list
  const shipped: order.components["schemas"]["OrderStatus"] = "shipped";
  return shipped;
}
