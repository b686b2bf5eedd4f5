//! The users table. A user is stored `pending`, becomes `active` once its
//! billing account exists, and only active users are ever shown.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::domain::NewUser;
use crate::schema::users;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    pub created_at: NaiveDateTime,
}

service_kit::stored_enum! {
    /// A user is stored `pending` and becomes `active` once its billing
    /// account exists.
    pub enum UserStatus("user status") {
        Pending => "pending",
        Active => "active",
    }
}

/// Which unique field a new user collides on.
#[derive(Debug, PartialEq)]
pub enum Taken {
    Username,
    Email,
}

impl Taken {
    /// The field whose unique index a failed INSERT ran into, when that is
    /// the failure: the check before the INSERT cannot see a request that
    /// is inserting the same name or e-mail at the same moment (PostgreSQL,
    /// READ COMMITTED), so the index has the last word. PostgreSQL names the
    /// constraint (`users_email_key_key`), SQLite the column
    /// (`UNIQUE constraint failed: users.email_key`).
    pub fn from_violation(e: &diesel::result::Error) -> Option<Taken> {
        let diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, info) = e else {
            return None;
        };
        let names = [info.constraint_name().unwrap_or_default(), info.message()];
        if names.iter().any(|n| n.contains("username_key")) {
            Some(Taken::Username)
        } else if names.iter().any(|n| n.contains("email_key")) {
            Some(Taken::Email)
        } else {
            None
        }
    }
}

pub trait Directory {
    fn taken(&mut self, user: &NewUser) -> QueryResult<Option<Taken>>;
    fn insert_pending(&mut self, user: &NewUser, password_hash: &str, now: NaiveDateTime) -> QueryResult<User>;
    /// The id and password hash of the active user with this username key.
    fn credentials(&mut self, username_key: &str) -> QueryResult<Option<(i64, Option<String>)>>;
    fn activate(&mut self, id: i64) -> QueryResult<()>;
    fn remove_pending(&mut self, id: i64) -> QueryResult<()>;
    fn active_user(&mut self, id: i64) -> QueryResult<Option<User>>;
    /// Pending users created before `before` (their request died midway).
    fn stale_pending(&mut self, before: NaiveDateTime, limit: i64) -> QueryResult<Vec<User>>;
}

macro_rules! directory {
    ($conn:ty) => {
        impl Directory for $conn {
            fn taken(&mut self, user: &NewUser) -> QueryResult<Option<Taken>> {
                let by_name: i64 =
                    users::table.filter(users::username_key.eq(user.username.key())).count().get_result(self)?;
                if by_name > 0 {
                    return Ok(Some(Taken::Username));
                }
                let by_email: i64 =
                    users::table.filter(users::email_key.eq(user.email.key())).count().get_result(self)?;
                Ok((by_email > 0).then_some(Taken::Email))
            }

            fn insert_pending(&mut self, user: &NewUser, password_hash: &str, now: NaiveDateTime) -> QueryResult<User> {
                diesel::insert_into(users::table)
                    .values((
                        users::username.eq(user.username.as_str()),
                        users::username_key.eq(user.username.key()),
                        users::email.eq(user.email.as_str()),
                        users::email_key.eq(user.email.key()),
                        users::first_name.eq(&user.first_name),
                        users::last_name.eq(&user.last_name),
                        users::phone.eq(&user.phone),
                        users::status.eq(UserStatus::Pending),
                        users::created_at.eq(now),
                        users::password_hash.eq(password_hash),
                    ))
                    .returning(User::as_returning())
                    .get_result(self)
            }

            fn credentials(&mut self, username_key: &str) -> QueryResult<Option<(i64, Option<String>)>> {
                users::table
                    .filter(users::username_key.eq(username_key))
                    .filter(users::status.eq(UserStatus::Active))
                    .select((users::id, users::password_hash))
                    .first(self)
                    .optional()
            }

            fn activate(&mut self, id: i64) -> QueryResult<()> {
                diesel::update(users::table.find(id)).set(users::status.eq(UserStatus::Active)).execute(self).map(drop)
            }

            fn remove_pending(&mut self, id: i64) -> QueryResult<()> {
                diesel::delete(users::table.find(id).filter(users::status.eq(UserStatus::Pending)))
                    .execute(self)
                    .map(drop)
            }

            fn active_user(&mut self, id: i64) -> QueryResult<Option<User>> {
                users::table
                    .find(id)
                    .filter(users::status.eq(UserStatus::Active))
                    .select(User::as_select())
                    .first(self)
                    .optional()
            }

            fn stale_pending(&mut self, before: NaiveDateTime, limit: i64) -> QueryResult<Vec<User>> {
                users::table
                    .filter(users::status.eq(UserStatus::Pending))
                    .filter(users::created_at.lt(before))
                    .order(users::id)
                    .limit(limit)
                    .select(User::as_select())
                    .load(self)
            }
        }
    };
}

directory!(diesel::PgConnection);
directory!(diesel::SqliteConnection);
