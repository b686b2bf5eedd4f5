//! A letter to store, parsed: values of these types are valid by
//! construction.

service_kit::stored_enum! {
    /// What a letter tells the user.
    pub enum LetterKind("letter kind") {
        OrderPaid => "order_paid",
        OrderRejected => "order_rejected",
        OrderCancelled => "order_cancelled",
    }
}

/// Why a letter was refused (a 422).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field} {reason}")]
pub struct LetterError {
    pub field: &'static str,
    pub reason: String,
}

fn refuse(field: &'static str, reason: impl Into<String>) -> LetterError {
    LetterError { field, reason: reason.into() }
}

fn within(field: &'static str, text: &str, min: usize, max: usize) -> Result<(), LetterError> {
    let len = text.chars().count();
    if (min..=max).contains(&len) {
        Ok(())
    } else {
        Err(refuse(field, format!("must be {min} to {max} characters long, got {len}")))
    }
}

/// Where a letter goes: 3..=320 characters with an `@`, no spaces or
/// control characters. (Whether it exists is for a mail server to say.)
#[derive(Debug, Clone, PartialEq)]
pub struct Address(String);

impl Address {
    pub fn parse(value: String) -> Result<Address, LetterError> {
        within("email", &value, 3, 320)?;
        if !value.contains('@') {
            return Err(refuse("email", "must contain '@'"));
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(refuse("email", "must not contain spaces or control characters"));
        }
        Ok(Address(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One line of 1..=255 characters.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject(String);

impl Subject {
    pub fn parse(value: String) -> Result<Subject, LetterError> {
        within("subject", &value, 1, 255)?;
        if value.chars().any(char::is_control) {
            return Err(refuse("subject", "must not contain control characters"));
        }
        Ok(Subject(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// 1..=10000 characters of text; of the control characters only tab and
/// line breaks (PostgreSQL cannot store NUL at all).
#[derive(Debug, Clone, PartialEq)]
pub struct Body(String);

impl Body {
    pub fn parse(value: String) -> Result<Body, LetterError> {
        within("body", &value, 1, 10_000)?;
        if value.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) {
            return Err(refuse("body", "must not contain control characters other than tab and line breaks"));
        }
        Ok(Body(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A letter to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLetter {
    pub user_id: i64,
    pub order_id: i64,
    pub kind: LetterKind,
    pub email: Address,
    pub subject: Subject,
    pub body: Body,
}

impl NewLetter {
    pub fn new(
        user_id: i64,
        order_id: i64,
        kind: LetterKind,
        email: String,
        subject: String,
        body: String,
    ) -> Result<NewLetter, LetterError> {
        if user_id < 1 || order_id < 1 {
            return Err(refuse("user_id and order_id", "must be positive"));
        }
        Ok(NewLetter {
            user_id,
            order_id,
            kind,
            email: Address::parse(email)?,
            subject: Subject::parse(subject)?,
            body: Body::parse(body)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(email: &str, subject: &str, body: &str) -> Result<NewLetter, LetterError> {
        NewLetter::new(1, 1, LetterKind::OrderPaid, email.into(), subject.into(), body.into())
    }

    #[test]
    fn stored_text_has_no_control_characters() {
        assert!(letter("a@b.co", "Order #1 is paid", "line 1\nline 2\tend\r\n").is_ok());
        let refused = [
            ("a@b.co\u{0}", "s", "b"),
            ("a b@c.de", "s", "b"),
            ("a@b.co", "s\u{0}", "b"),
            ("a@b.co", "two\nlines", "b"),
            ("a@b.co", "s", "b\u{0}"),
            ("a@b.co", "s", "bell\u{7}"),
        ];
        for (email, subject, body) in refused {
            assert!(letter(email, subject, body).is_err(), "{email:?} {subject:?} {body:?}");
        }
    }

    #[test]
    fn fields_are_bounded_and_ids_positive() {
        assert_eq!(letter("nobody", "s", "b").unwrap_err().field, "email");
        assert_eq!(letter("a@b.co", "", "b").unwrap_err().field, "subject");
        assert_eq!(letter("a@b.co", "s", &"x".repeat(10_001)).unwrap_err().field, "body");
        let no_order = NewLetter::new(1, 0, LetterKind::OrderPaid, "a@b.co".into(), "s".into(), "b".into());
        assert!(no_order.is_err());
    }
}
