//! What a request to move money means once it is parsed.

use service_kit::money::Amount;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Deposit,
    Withdrawal,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Deposit => "deposit",
            EntryKind::Withdrawal => "withdrawal",
        }
    }
}

/// Prefix of the references order-service pays orders with.
pub const ORDER_PREFIX: &str = "order-";

/// A client's name for one money movement: 1..=255 characters, unique per
/// account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference(String);

/// Who may use a reference starting with `order-`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Public,
    OrderService,
}

impl Reference {
    pub fn parse(value: String, caller: Caller) -> Result<Reference, String> {
        let len = value.chars().count();
        if !(1..=255).contains(&len) {
            return Err(format!("reference must be 1 to 255 characters long, got {len}"));
        }
        if caller == Caller::Public && value.starts_with(ORDER_PREFIX) {
            return Err(format!("references starting with '{ORDER_PREFIX}' are reserved for order payments"));
        }
        Ok(Reference(value))
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
        assert!(Reference::parse(String::new(), Caller::Public).is_err());
        assert!(Reference::parse("x".repeat(256), Caller::Public).is_err());
        assert!(Reference::parse("x".repeat(255), Caller::Public).is_ok());
    }

    #[test]
    fn order_references_are_reserved() {
        assert!(Reference::parse("order-1".into(), Caller::Public).is_err());
        assert!(Reference::parse("order-1".into(), Caller::OrderService).is_ok());
        assert!(Reference::parse("gift-1".into(), Caller::Public).is_ok());
    }
}
