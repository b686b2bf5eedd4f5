//! What a request to move money means once it is parsed: values of these
//! types are valid by construction.

use service_kit::money::Amount;

service_kit::stored_enum! {
    /// What a ledger entry did to the balance.
    pub enum EntryKind("ledger entry kind") {
        Deposit => "deposit",
        Withdrawal => "withdrawal",
        /// An order payment given back when the order was cancelled.
        Refund => "refund",
    }
}

impl EntryKind {
    /// Whether the entry adds to the balance.
    pub fn credits(self) -> bool {
        match self {
            EntryKind::Deposit | EntryKind::Refund => true,
            EntryKind::Withdrawal => false,
        }
    }
}

service_kit::stored_enum! {
    /// Why a withdrawal under a reference moved no money.
    pub enum Refusal("refusal") {
        InsufficientFunds => "insufficient_funds",
        /// The order payment was cancelled before it was made.
        Voided => "voided",
    }
}

/// Prefix of the references order-service pays orders with.
pub const ORDER_PREFIX: &str = "order-";
/// Prefix of the references billing gives refunds of order payments.
pub const REFUND_PREFIX: &str = "refund-";

/// Who may use a reference starting with `order-`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Public,
    OrderService,
}

/// Why a reference was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReferenceError {
    #[error("reference must be 1 to 255 characters long, got {0}")]
    Length(usize),
    /// PostgreSQL cannot store NUL in text, and a reference is a name, not
    /// free text.
    #[error("reference must not contain control characters")]
    ControlCharacter,
    #[error("references starting with '{ORDER_PREFIX}' are reserved for order payments")]
    Reserved,
    #[error("references starting with '{REFUND_PREFIX}' are reserved for refunds of order payments")]
    ReservedForRefunds,
    #[error("only an order payment's reference ('{ORDER_PREFIX}…') can be cancelled")]
    NotAnOrderPayment,
}

/// A client's name for one money movement: 1..=255 characters, no control
/// characters, unique per account; `order-…` only from order-service;
/// `refund-…` only as billing names a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference(String);

impl Reference {
    pub fn parse(value: String, caller: Caller) -> Result<Reference, ReferenceError> {
        let len = value.chars().count();
        if !(1..=255).contains(&len) {
            return Err(ReferenceError::Length(len));
        }
        if value.chars().any(char::is_control) {
            return Err(ReferenceError::ControlCharacter);
        }
        if caller == Caller::Public && value.starts_with(ORDER_PREFIX) {
            return Err(ReferenceError::Reserved);
        }
        if value.starts_with(REFUND_PREFIX) {
            return Err(ReferenceError::ReservedForRefunds);
        }
        Ok(Reference(value))
    }

    /// An order payment's reference (`order-…`), which only order-service
    /// may cancel.
    pub fn order_payment(value: String) -> Result<Reference, ReferenceError> {
        if !value.starts_with(ORDER_PREFIX) {
            return Err(ReferenceError::NotAnOrderPayment);
        }
        Reference::parse(value, Caller::OrderService)
    }

    /// The reference of this payment's refund.
    pub fn refund(&self) -> Reference {
        Reference(format!("{REFUND_PREFIX}{}", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One deposit or withdrawal to apply.
#[derive(Debug, Clone)]
pub struct Movement {
    pub user_id: i64,
    pub kind: EntryKind,
    pub amount: Amount,
    pub reference: Option<Reference>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_bounded() {
        assert_eq!(Reference::parse(String::new(), Caller::Public), Err(ReferenceError::Length(0)));
        assert_eq!(Reference::parse("x".repeat(256), Caller::Public), Err(ReferenceError::Length(256)));
        assert!(Reference::parse("x".repeat(255), Caller::Public).is_ok());
    }

    #[test]
    fn order_references_are_reserved() {
        assert_eq!(Reference::parse("order-1".into(), Caller::Public), Err(ReferenceError::Reserved));
        assert!(Reference::parse("order-1".into(), Caller::OrderService).is_ok());
        assert!(Reference::parse("gift-1".into(), Caller::Public).is_ok());
    }

    #[test]
    fn refund_references_are_billings_own() {
        for caller in [Caller::Public, Caller::OrderService] {
            assert_eq!(Reference::parse("refund-order-1".into(), caller), Err(ReferenceError::ReservedForRefunds));
        }
        let payment = Reference::order_payment("order-7".into()).unwrap();
        assert_eq!(payment.refund().as_str(), "refund-order-7");
        assert_eq!(Reference::order_payment("gift-7".into()), Err(ReferenceError::NotAnOrderPayment));
    }

    #[test]
    fn references_never_hold_control_characters() {
        for bad in ["a\u{0}", "tab\there", "line\nbreak", "\u{85}"] {
            assert_eq!(Reference::parse(bad.into(), Caller::Public), Err(ReferenceError::ControlCharacter), "{bad:?}");
            let order = format!("order-{bad}");
            assert_eq!(Reference::parse(order, Caller::OrderService), Err(ReferenceError::ControlCharacter));
        }
    }
}
