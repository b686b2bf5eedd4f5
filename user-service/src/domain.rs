//! A new user, parsed: a value of these types is valid by construction.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct Username(String);

#[derive(Debug, Clone, PartialEq)]
pub struct Email(String);

/// Why a field was refused (a 422).
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

fn refuse(field: &'static str, reason: impl Into<String>) -> FieldError {
    FieldError { field, reason: reason.into() }
}

impl Username {
    /// 3..=64 of `A-Z a-z 0-9 _ . -`.
    pub fn parse(value: &str) -> Result<Username, FieldError> {
        let len = value.chars().count();
        if !(3..=64).contains(&len) {
            return Err(refuse("username", format!("must be 3 to 64 characters long, got {len}")));
        }
        if !value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
            return Err(refuse("username", "may contain only letters, digits, '_', '.' and '-'"));
        }
        Ok(Username(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What uniqueness is judged on.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl Email {
    /// A plausible address: `local@domain.tld`, at most 254 characters, no
    /// spaces. Whether it exists is for the mail server to say.
    pub fn parse(value: &str) -> Result<Email, FieldError> {
        let bad = |why: &str| refuse("email", why.to_owned());
        // Uniqueness is judged on the lower-cased address, stored beside it
        // in a column of the same 254 characters, and lower-casing can
        // lengthen a text ("İ" becomes "i̇"): both must fit.
        if value.chars().count() > 254 || value.to_lowercase().chars().count() > 254 {
            return Err(bad("must be at most 254 characters long, also in lower case"));
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("must not contain spaces"));
        }
        let Some((local, domain)) = value.rsplit_once('@') else {
            return Err(bad("must look like name@example.com"));
        };
        let labels: Vec<&str> = domain.split('.').collect();
        let plausible = !local.is_empty()
            && local.len() <= 64
            && !local.contains('@')
            && labels.len() >= 2
            && labels.iter().all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'))
            && labels.iter().all(|l| l.chars().all(|c| c.is_alphanumeric() || c == '-'));
        if !plausible {
            return Err(bad("must look like name@example.com"));
        }
        Ok(Email(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An optional free-text field: at most `max` characters, `null` if absent.
pub fn optional_text(field: &'static str, value: Option<String>, max: usize) -> Result<Option<String>, FieldError> {
    match value {
        Some(v) if v.chars().count() > max => Err(refuse(field, format!("must be at most {max} characters long"))),
        Some(v) if v.chars().any(char::is_control) => Err(refuse(field, "must not contain control characters")),
        other => Ok(other),
    }
}

/// A phone number: digits with optional `+`, spaces, dashes and brackets.
pub fn optional_phone(value: Option<String>) -> Result<Option<String>, FieldError> {
    let Some(v) = value else { return Ok(None) };
    let digits = v.chars().filter(char::is_ascii_digit).count();
    let allowed = v.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')'));
    if !allowed || !(5..=20).contains(&digits) || v.len() > 32 {
        return Err(refuse("phone", "must be 5 to 20 digits, optionally with + - ( ) and spaces"));
    }
    Ok(Some(v))
}

/// A password as given: 8..=128 characters (Unicode scalar values). It is
/// only ever hashed; its `Debug` shows nothing of it.
#[derive(Clone, PartialEq)]
pub struct Password(String);

impl Password {
    pub fn parse(value: String) -> Result<Password, FieldError> {
        let len = value.chars().count();
        if !(8..=128).contains(&len) {
            return Err(refuse("password", format!("must be 8 to 128 characters long, got {len}")));
        }
        Ok(Password(value))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: Username,
    pub email: Email,
    pub password: Password,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(Username::parse("ivan_2").is_ok());
        assert!(Username::parse("ab").is_err());
        assert!(Username::parse(&"a".repeat(65)).is_err());
        assert!(Username::parse(&"a".repeat(64)).is_ok());
        assert!(Username::parse("has space").is_err());
        assert_eq!(Username::parse("Ivan").unwrap().key(), "ivan");
    }

    #[test]
    fn emails() {
        for ok in ["a@b.co", "ivan.petrov+shop@mail.example.com", "Ivan@Example.COM"] {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "plain", "@b.co", "a@", "a@b", "a@.co", "a b@c.de", "a@b..co", "a@-b.co"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Email::parse("Ivan@Example.COM").unwrap().key(), "ivan@example.com");
    }

    #[test]
    fn the_lower_case_email_must_fit_too() {
        // 254 characters, but "İ" lower-cases to two ("i̇").
        let long = format!("a@{}.com", "İ".repeat(248));
        assert_eq!(long.chars().count(), 254);
        assert!(Email::parse(&long).is_err());
        assert!(Email::parse(&format!("a@{}.com", "I".repeat(248))).is_ok());
    }

    #[test]
    fn passwords_are_8_to_128_characters_and_never_shown() {
        assert!(Password::parse("x".repeat(7)).is_err());
        assert!(Password::parse("x".repeat(8)).is_ok());
        assert!(Password::parse("ж".repeat(128)).is_ok(), "characters, not bytes");
        assert!(Password::parse("x".repeat(129)).is_err());
        let p = Password::parse("correct horse".into()).unwrap();
        assert_eq!(format!("{p:?}"), "Password(***)");
    }

    #[test]
    fn phones_and_names() {
        assert_eq!(optional_phone(None), Ok(None));
        assert!(optional_phone(Some("+7 (999) 123-45-67".into())).is_ok());
        assert!(optional_phone(Some("call me".into())).is_err());
        assert!(optional_text("first_name", Some("x".repeat(101)), 100).is_err());
    }
}
