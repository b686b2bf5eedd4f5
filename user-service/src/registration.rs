//! Creating a user: stored pending → billing account opened → active. A
//! user is never visible without an account; if billing cannot open one,
//! the pending user is removed and the client gets 503.

use std::time::Duration;

use actix_web::HttpResponse;
use service_kit::db::{self, DbPool, WriteTransaction};
use service_kit::idempotency::{Claim, IdempotencyKey, IdempotencyStore, StoredResponse};
use service_kit::peer::RetryPolicy;
use service_kit::{time, with_backend};

use crate::billing::BillingClient;
use crate::directory::{Directory, User};
use crate::domain::NewUser;
use crate::error::UserError;
use crate::routes::UserBody;

#[derive(Clone)]
pub struct Users {
    pub pool: DbPool,
    pub billing: BillingClient,
}

/// A key and the request it came with.
pub type Keyed = Option<(IdempotencyKey, String)>;

enum Begun {
    Answered(Claim),
    Pending(User),
}

fn created(user: User) -> StoredResponse {
    let id = user.id;
    StoredResponse {
        status: 201,
        body: serde_json::to_string(&UserBody::from(user)).expect("a user always serializes"),
        location: Some(format!("/users/{id}")),
    }
}

impl Users {
    pub async fn register(&self, user: NewUser, keyed: Keyed) -> Result<HttpResponse, UserError> {
        let key = keyed.as_ref().map(|(k, _)| k.clone());
        let pending = match self.begin(user, keyed).await? {
            Begun::Answered(claim) => return Ok(claim.into_answer().expect("not fresh")),
            Begun::Pending(user) => user,
        };
        let id = pending.id;
        match self.billing.open_account(id).await {
            Ok(()) => {
                let response = created(pending);
                self.finish(id, key, response.clone()).await?;
                log::info!("user {id} created");
                Ok(response.to_response())
            }
            Err(e) => {
                log::warn!("user {id} not created: {e}");
                self.abandon(id, key).await?;
                Err(UserError::BillingUnavailable(e.to_string()))
            }
        }
    }

    async fn begin(&self, user: NewUser, keyed: Keyed) -> Result<Begun, UserError> {
        db::run(&self.pool, move |conn| {
            with_backend!(conn, c => c.write_transaction(|c| {
                if let Some((key, request)) = &keyed {
                    let claim = c.claim_key(key, request, time::now())?;
                    if claim != Claim::Fresh {
                        return Ok(Begun::Answered(claim));
                    }
                }
                if let Some(taken) = c.taken(&user)? {
                    return Err(UserError::Taken(taken));
                }
                let pending = c.insert_pending(&user, time::now())?;
                if let Some((key, _)) = &keyed {
                    c.attach_resource(key, pending.id)?;
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
                    self.finish(id, None, created(user)).await?;
                    log::info!("recovered pending user {id}");
                    finished += 1;
                }
                Err(e) => log::warn!("pending user {id} still has no account: {e}"),
            }
        }
        Ok(finished)
    }
}
