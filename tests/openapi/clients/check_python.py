"""The Python clients openapi-python-client generated from openapi/*.yaml, used
against a running all-in-one binary: python check_python.py GENERATED_DIR BASE_URL.

Every answer is read through the generated functions and parsed models; a model
with `additional_properties` means the service sent a field its document lacks.
"""

import sys
import uuid

import httpx

sys.path.insert(0, sys.argv[1])

import billing_service_client as billing
import notification_service_client as notification
import order_service_client as order
import user_service_client as user
from billing_service_client.api.billing import deposit, get_account, list_transactions, withdraw
from notification_service_client.api.notifications import list_notifications
from order_service_client.api.orders import create_order, get_order
from user_service_client.api.users import create_user, get_user, sign_in

base_url = sys.argv[2]


def connect(package, token=None):
    """A client of one service; with a token, acting for its user."""
    timeout = httpx.Timeout(10.0)
    if token is None:
        return package.Client(base_url=base_url, timeout=timeout, raise_on_unexpected_status=True)
    return package.AuthenticatedClient(base_url=base_url, token=token, timeout=timeout, raise_on_unexpected_status=True)


def parsed(answer, status, model):
    assert answer.status_code == status, (answer.status_code, answer.content)
    body = answer.parsed
    for item in body if isinstance(body, list) else [body]:
        assert isinstance(item, model), (model, item)
        assert not item.additional_properties, f"undocumented fields in {model.__name__}: {item.additional_properties}"
    return body


name = f"client_{uuid.uuid4().hex[:12]}"
password = f"pw-{uuid.uuid4().hex}"
new = user.models.NewUserRequest(username=name, email=f"{name}@example.com", password=password, first_name="Ivan")
me = parsed(create_user.sync_detailed(client=connect(user), body=new), 201, user.models.UserBody)
credentials = user.models.SignInRequest(username=name, password=password)
token = parsed(sign_in.sync_detailed(client=connect(user), body=credentials), 200, user.models.TokenBody)
assert token.token_type == "Bearer" and token.expires_in > 0, token
users, accounts, orders, letters = (connect(p, token.access_token) for p in (user, billing, order, notification))
# Without the token: the document's 401.
unauthorized = parsed(get_user.sync_detailed(client=connect(user), id=me.id), 401, user.models.Problem)
assert unauthorized.type_.endswith("/unauthorized"), unauthorized
assert (me.username, me.first_name, me.last_name) == (name, "Ivan", None) and me.created_at.tzinfo is not None
assert parsed(get_user.sync_detailed(client=users, id=me.id), 200, user.models.UserBody) == me
assert parsed(get_account.sync_detailed(client=accounts, user_id=me.id), 200, billing.models.AccountBody).balance == 0

top_up = billing.models.MoneyRequest(amount=1000, reference=f"top-up-{name}")
receipt = parsed(deposit.sync_detailed(client=accounts, user_id=me.id, body=top_up), 200, billing.models.ReceiptBody)
assert receipt.balance == 1000

paid = parsed(
    create_order.sync_detailed(client=orders, body=order.models.NewOrderRequest(user_id=me.id, price=400)),
    201,
    order.models.OrderBody,
)
assert (paid.status, paid.failure_reason) == (order.models.OrderStatus.PAID, None)
rejected = parsed(
    create_order.sync_detailed(client=orders, body=order.models.NewOrderRequest(user_id=me.id, price=5000)),
    201,
    order.models.OrderBody,
)
assert (rejected.status, rejected.failure_reason) == (
    order.models.OrderStatus.REJECTED,
    order.models.FailureReason.INSUFFICIENT_FUNDS,
)
assert parsed(get_order.sync_detailed(client=orders, id=paid.id), 200, order.models.OrderBody) == paid

# A 4xx answer is the document's problem model, carrying the request's id.
refusal = withdraw.sync_detailed(
    client=accounts, user_id=me.id, x_request_id=f"check-{name}", body=billing.models.MoneyRequest(amount=601)
)
problem = parsed(refusal, 409, billing.models.Problem)
assert problem.type_.endswith("/insufficient-funds") and problem.status == 409, problem
assert problem.request_id == refusal.headers["X-Request-Id"] == f"check-{name}", (problem, refusal.headers)

ledger = parsed(list_transactions.sync_detailed(client=accounts, user_id=me.id), 200, billing.models.EntryBody)
assert [(e.kind, e.amount, e.balance_after) for e in ledger] == [
    (billing.models.EntryKind.WITHDRAWAL, 400, 600),
    (billing.models.EntryKind.DEPOSIT, 1000, 1000),
], ledger

mail = parsed(list_notifications.sync_detailed(client=letters, user_id=me.id), 200, notification.models.LetterBody)
assert [(m.kind, m.order_id) for m in mail] == [
    (notification.models.LetterKind.ORDER_REJECTED, rejected.id),
    (notification.models.LetterKind.ORDER_PAID, paid.id),
], mail
assert "4.00" in mail[1].body and mail[1].email == new.email

print(f"python clients: user {me.id}, orders {paid.id} and {rejected.id}, the ledger, letters and a problem parsed")
