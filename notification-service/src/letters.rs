//! Stored letters: written once per `(order_id, kind)`.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use service_kit::db::KeepPrepared;

use crate::domain::{LetterKind, NewLetter};
use crate::schema::notifications;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = notifications)]
pub struct Letter {
    pub id: i64,
    pub user_id: i64,
    pub order_id: i64,
    pub kind: LetterKind,
    pub email: String,
    pub subject: String,
    pub body: String,
    pub created_at: NaiveDateTime,
}

pub trait Mailbox {
    /// Stores the letter unless its `(order_id, kind)` is there; returns the
    /// stored letter and whether it is new.
    fn deliver(&mut self, letter: &NewLetter, now: NaiveDateTime) -> QueryResult<(Letter, bool)>;
    /// Newest first.
    fn letters_of(&mut self, user_id: i64) -> QueryResult<Vec<Letter>>;
}

macro_rules! mailbox {
    ($conn:ty) => {
        impl Mailbox for $conn {
            fn deliver(&mut self, letter: &NewLetter, now: NaiveDateTime) -> QueryResult<(Letter, bool)> {
                let stored = diesel::insert_into(notifications::table)
                    .values((
                        notifications::user_id.eq(letter.user_id),
                        notifications::order_id.eq(letter.order_id),
                        notifications::kind.eq(letter.kind),
                        notifications::email.eq(letter.email.as_str()),
                        notifications::subject.eq(letter.subject.as_str()),
                        notifications::body.eq(letter.body.as_str()),
                        notifications::created_at.eq(now),
                    ))
                    .on_conflict_do_nothing()
                    .returning(Letter::as_returning())
                    .prepared()
                    .get_result(self)
                    .optional()?;
                if let Some(stored) = stored {
                    return Ok((stored, true));
                }
                // Already there: the first copy is the answer.
                let earlier = notifications::table
                    .filter(notifications::order_id.eq(letter.order_id))
                    .filter(notifications::kind.eq(letter.kind))
                    .select(Letter::as_select())
                    .first(self)?;
                Ok((earlier, false))
            }

            fn letters_of(&mut self, user_id: i64) -> QueryResult<Vec<Letter>> {
                notifications::table
                    .filter(notifications::user_id.eq(user_id))
                    .order(notifications::id.desc())
                    .select(Letter::as_select())
                    .load(self)
            }
        }
    };
}

mailbox!(diesel::PgConnection);
mailbox!(diesel::SqliteConnection);
