//! Creating a user: stored pending → billing account opened → active. A
//! user is never visible without an account; if billing cannot open one,
//! the pending user is removed and the client gets 503.

use std::time::Duration;

use service_kit::db::{self, DbPool, WriteTransaction};
use service_kit::idempotency::{Claim, IdempotencyKey, IdempotencyStore, KeyedRequest, StoredResponse};
use service_kit::peer::RetryPolicy;
use service_kit::{time, with_backend};

use crate::billing::BillingClient;
use crate::directory::{Directory, User};
use crate::domain::NewUser;
use crate::error::UserError;
use crate::passwords;

/// How the answer a key keeps for a new user is written (the route layer
/// decides: status, body, `Location`).
pub type AnswerFor = fn(&User) -> StoredResponse;

#[derive(Clone)]
pub struct Users {
    pub pool: DbPool,
    pub billing: BillingClient,
    pub answer_for: AnswerFor,
}

/// What `register` came to.
#[derive(Debug)]
pub enum Registration {
    Created(User),
    /// The answer an earlier request with this key got.
    Replayed(StoredResponse),
}

enum Begun {
    Answered(StoredResponse),
    Pending(User),
}

impl Users {
    pub async fn register(&self, user: NewUser, keyed: Option<KeyedRequest>) -> Result<Registration, UserError> {
        if let Some(keyed) = keyed.clone() {
            // A replay is answered from the key alone, before the password
            // is hashed (tens of milliseconds of CPU).
            let claim = db::run(
                &self.pool,
                move |conn| with_backend!(conn, c => Ok::<_, UserError>(c.check_key(&keyed.key, &keyed.fingerprint)?)),
            )
            .await?;
            if let Some(answer) = claim.settle()? {
                return Ok(Registration::Replayed(answer));
            }
        }
        let password_hash = passwords::hash(user.password.clone()).await?;
        let key = keyed.as_ref().map(|k| k.key.clone());
        let pending = match self.begin(user, password_hash, keyed).await? {
            Begun::Answered(answer) => return Ok(Registration::Replayed(answer)),
            Begun::Pending(user) => user,
        };
        let id = pending.id;
        match self.billing.open_account(id).await {
            Ok(()) => {
                let response = (self.answer_for)(&pending);
                self.finish(id, key, response).await?;
                log::info!("user {id} created");
                Ok(Registration::Created(pending))
            }
            Err(e) => {
                self.abandon(id, key).await?;
                Err(UserError::BillingUnavailable(e))
            }
        }
    }

    async fn begin(
        &self,
        user: NewUser,
        password_hash: String,
        keyed: Option<KeyedRequest>,
    ) -> Result<Begun, UserError> {
        db::run(&self.pool, move |conn| {
            with_backend!(conn, c => c.write_transaction(|c| {
                if let Some(keyed) = &keyed {
                    let claim = c.claim_key(&keyed.key, &keyed.fingerprint, time::now())?;
                    if claim != Claim::Fresh {
                        return Ok(Begun::Answered(claim.settle()?.expect("not fresh")));
                    }
                }
                if let Some(taken) = c.taken(&user)? {
                    return Err(UserError::Taken(taken));
                }
                let pending = c.insert_pending(&user, &password_hash, time::now())?;
                if let Some(keyed) = &keyed {
                    c.attach_resource(&keyed.key, pending.id)?;
                }
                Ok(Begun::Pending(pending))
            }))
        })
        .await
    }

    async fn finish(&self, id: i64, key: Option<IdempotencyKey>, response: StoredResponse) -> Result<(), UserError> {
        db::run(&self.pool, move |conn| {
            with_backend!(conn, c => c.write_transaction(|c| {
                c.activate(id)?;
                match &key {
                    Some(key) => c.complete_key(key.as_str(), &response)?,
                    None => c.complete_key_of_resource(id, &response)?,
                }
                Ok::<_, UserError>(())
            }))
        })
        .await
    }

    async fn abandon(&self, id: i64, key: Option<IdempotencyKey>) -> Result<(), UserError> {
        db::run(&self.pool, move |conn| {
            with_backend!(conn, c => c.write_transaction(|c| {
                c.remove_pending(id)?;
                if let Some(key) = &key {
                    c.release_key(key)?;
                }
                Ok::<_, UserError>(())
            }))
        })
        .await
    }

    pub async fn find(&self, id: i64) -> Result<User, UserError> {
        db::run(&self.pool, move |conn| with_backend!(conn, c => Ok::<_, UserError>(c.active_user(id)?)))
            .await?
            .ok_or(UserError::NotFound(id))
    }

    /// Finishes users whose creating request died between storing them and
    /// opening their account (a crash, a kill): opens the account and
    /// activates them, so a replay of their key gets the 201.
    pub async fn recover(&self, older_than: Duration) -> Result<usize, UserError> {
        let before = time::now() - chrono::Duration::from_std(older_than).unwrap_or_default();
        let stale = db::run(
            &self.pool,
            move |conn| with_backend!(conn, c => Ok::<_, UserError>(c.stale_pending(before, 100)?)),
        )
        .await?;
        let mut finished = 0;
        for user in stale {
            let id = user.id;
            let once = RetryPolicy::within(self.billing.policy.budget);
            match self.billing.open_with(once, id).await {
                Ok(()) => {
                    self.finish(id, None, (self.answer_for)(&user)).await?;
                    log::info!("recovered pending user {id}");
                    finished += 1;
                }
                Err(e) => log::warn!("pending user {id} still has no account: {e}"),
            }
        }
        Ok(finished)
    }
}
