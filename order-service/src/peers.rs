//! order-service's calls to the other three services. Each call has a
//! timeout; transient failures are retried within what is left of the
//! request's budget; business answers (404, 409, 422) are final.

use std::time::Instant;

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use service_kit::money::MajorUnits;
use service_kit::peer::{self, Answer, CallError, Peer, RetryPolicy};
use service_kit::problem::ProblemType;

use crate::book::{Decision, FailureReason, Order, OrderStatus};

/// When the work on behalf of one request must be over.
#[derive(Clone, Copy, Debug)]
pub struct Deadline(pub Instant);

impl Deadline {
    pub fn policy(self) -> RetryPolicy {
        RetryPolicy::within(self.0.saturating_duration_since(Instant::now()))
    }
}

async fn call<T: serde::de::DeserializeOwned>(
    peer: &Peer,
    deadline: Deadline,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<Answer<T>, CallError> {
    peer::with_retries(deadline.policy(), peer.name, || peer.call::<T>(build())).await
}

#[derive(Clone, Debug)]
pub struct Peers {
    pub users: Peer,
    pub billing: Peer,
    pub notifications: Peer,
}

#[derive(Debug, Deserialize)]
pub struct UserView {
    pub id: i64,
    pub email: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("{peer} refused: {problem}")]
    Refused { peer: &'static str, problem: service_kit::Problem },
}

#[derive(Debug, Deserialize)]
struct Receipt {
    #[allow(dead_code)]
    transaction_id: i64,
}

#[derive(Debug, Serialize)]
struct Letter<'a> {
    user_id: i64,
    order_id: i64,
    kind: &'a str,
    email: &'a str,
    subject: String,
    body: String,
}

#[derive(Debug, Deserialize)]
struct Settled {
    refunded: i64,
}

#[derive(Debug, Deserialize)]
struct Stored {
    #[allow(dead_code)]
    id: i64,
}

impl Peers {
    /// The user, or `None` when user-service says there is no such user.
    pub async fn user(&self, user_id: i64, deadline: Deadline) -> Result<Option<UserView>, PeerError> {
        let path = format!("/internal/users/{user_id}");
        match call::<UserView>(&self.users, deadline, || self.users.request(Method::GET, &path)).await? {
            Answer::Success(_, user) => Ok(Some(user)),
            Answer::Refused(p) if p.status == StatusCode::NOT_FOUND.as_u16() => Ok(None),
            Answer::Refused(problem) => Err(PeerError::Refused { peer: self.users.name, problem }),
        }
    }

    /// Pays for the order with reference `order-{id}`: however often this
    /// runs, billing moves the money at most once and always gives the
    /// same answer. A refusal other than insufficient funds (no account,
    /// the reference used otherwise) is `PeerError::Refused`: final.
    pub async fn pay(&self, order: &Order, deadline: Deadline) -> Result<Decision, PeerError> {
        let path = format!("/internal/billing/accounts/{}/withdraw", order.user_id);
        let body = json!({ "amount": order.price, "reference": format!("order-{}", order.id) });
        let answer =
            call::<Receipt>(&self.billing, deadline, || self.billing.request(Method::POST, &path).json(&body)).await?;
        match answer {
            Answer::Success(..) => Ok(Decision::Paid),
            Answer::Refused(p) if p.is(ProblemType::InsufficientFunds) => {
                Ok(Decision::Rejected(FailureReason::InsufficientFunds))
            }
            // The order was cancelled before its payment reached billing:
            // the order is `cancelling` by now, so this decision is never
            // recorded; the cancellation goes on.
            Answer::Refused(p) if p.is(ProblemType::PaymentCancelled) => {
                Ok(Decision::Rejected(FailureReason::PaymentRefused))
            }
            Answer::Refused(problem) => Err(PeerError::Refused { peer: self.billing.name, problem }),
        }
    }

    /// Settles the payment of a cancelled order for good (reference
    /// `order-{id}`): what was withdrawn comes back, or nothing will be.
    /// However often this runs, billing refunds at most once. The minor
    /// units given back.
    pub async fn cancel_payment(&self, order: &Order, deadline: Deadline) -> Result<i64, PeerError> {
        let path = format!("/internal/billing/accounts/{}/cancel-payment", order.user_id);
        let body = json!({ "reference": format!("order-{}", order.id) });
        let answer =
            call::<Settled>(&self.billing, deadline, || self.billing.request(Method::POST, &path).json(&body)).await?;
        match answer {
            Answer::Success(_, settled) => Ok(settled.refunded),
            Answer::Refused(problem) => Err(PeerError::Refused { peer: self.billing.name, problem }),
        }
    }

    /// Posts the letter for the order's decision; stored once per
    /// `(order_id, kind)` however often this runs. A refusal (the letter
    /// is invalid) is `PeerError::Refused`: final.
    pub async fn notify(&self, order: &Order, email: &str, deadline: Deadline) -> Result<(), PeerError> {
        let Some(letter) = letter_for(order, email) else {
            return Ok(());
        };
        let answer = call::<Stored>(&self.notifications, deadline, || {
            self.notifications.request(Method::POST, "/internal/notifications").json(&letter)
        })
        .await?;
        match answer {
            Answer::Success(..) => Ok(()),
            Answer::Refused(problem) => Err(PeerError::Refused { peer: self.notifications.name, problem }),
        }
    }
}

/// The letter that tells the user how the order ended; none while it has
/// not ended.
fn letter_for<'a>(order: &Order, email: &'a str) -> Option<Letter<'a>> {
    let price = MajorUnits(order.price);
    let id = order.id;
    let (kind, subject, body) = match (order.status, order.failure_reason) {
        (OrderStatus::Paid, _) => (
            "order_paid",
            format!("Order #{id} is paid"),
            format!("Your order #{id} for {price} is paid. Thank you for your purchase!"),
        ),
        (OrderStatus::Rejected, Some(FailureReason::PaymentRefused)) => (
            "order_rejected",
            format!("Order #{id} was rejected"),
            format!("Your order #{id} for {price} was rejected: the payment could not be made. Nothing was charged."),
        ),
        (OrderStatus::Rejected, _) => (
            "order_rejected",
            format!("Order #{id} was rejected"),
            format!(
                "Your order #{id} for {price} was rejected: there is not enough money on your account. \
                 Nothing was charged."
            ),
        ),
        (OrderStatus::Cancelled, _) => {
            let what = match order.refunded {
                Some(refunded) if refunded > 0 => format!("{} was refunded to your account.", MajorUnits(refunded)),
                _ => "Nothing was charged.".to_owned(),
            };
            (
                "order_cancelled",
                format!("Order #{id} is cancelled"),
                format!("Your order #{id} for {price} is cancelled. {what}"),
            )
        }
        (OrderStatus::Pending | OrderStatus::Cancelling, _) => return None,
    };
    Some(Letter { user_id: order.user_id, order_id: id, kind, email, subject, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(status: OrderStatus, failure_reason: Option<FailureReason>) -> Order {
        let now = service_kit::time::now();
        Order {
            id: 42,
            user_id: 7,
            price: 400,
            status,
            failure_reason,
            notified_at: None,
            attempts: 0,
            letter_refusal: None,
            lease_token: None,
            refunded: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn letters_name_the_order_and_the_price_in_major_units() {
        let happy = letter_for(&order(OrderStatus::Paid, None), "a@b.co").unwrap();
        assert_eq!(happy.kind, "order_paid");
        assert!(happy.body.contains("#42") && happy.body.contains("4.00"), "{}", happy.body);
        let sad = letter_for(&order(OrderStatus::Rejected, Some(FailureReason::InsufficientFunds)), "a@b.co").unwrap();
        assert_eq!(sad.kind, "order_rejected");
        assert!(sad.body.contains("#42") && sad.body.contains("4.00"), "{}", sad.body);
        let refused = letter_for(&order(OrderStatus::Rejected, Some(FailureReason::PaymentRefused)), "a@b.co").unwrap();
        assert!(refused.body.contains("could not be made"), "{}", refused.body);
        assert!(letter_for(&order(OrderStatus::Pending, None), "a@b.co").is_none());
        let mut cancelled = order(OrderStatus::Cancelled, None);
        cancelled.refunded = Some(400);
        let back = letter_for(&cancelled, "a@b.co").unwrap();
        assert_eq!(back.kind, "order_cancelled");
        assert!(back.body.contains("#42") && back.body.contains("4.00 was refunded"), "{}", back.body);
        cancelled.refunded = Some(0);
        let nothing = letter_for(&cancelled, "a@b.co").unwrap();
        assert!(nothing.body.contains("Nothing was charged"), "{}", nothing.body);
    }
}
