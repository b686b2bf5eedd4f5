//! `POST /users` and `GET /users/{id}`.

use actix_web::HttpResponse;
use actix_web::web::{self, Json, Path};
use serde::{Deserialize, Serialize};
use service_kit::body::JsonObject;
use service_kit::idempotency::{KeyHeader, StoredResponse};
use service_kit::ids::{Id, IdRefusal};
use service_kit::problem::{BodyRefusals, MalformedBody, ProblemType};
use service_kit::{Problem, time};
use utoipa::ToSchema;

use crate::directory::{Taken, User};
use crate::domain::{Email, NewUser, Password, Username, optional_phone, optional_text};
use crate::error::UserError;
use crate::registration::{Registration, Users};
use crate::sign_in::{SignIn, SignInError};

impl From<&UserError> for Problem {
    fn from(e: &UserError) -> Problem {
        let detail = e.to_string();
        match e {
            UserError::Invalid(_) => Problem::new(ProblemType::ValidationError, detail),
            UserError::Taken(Taken::Username) => Problem::new(ProblemType::UsernameTaken, detail),
            UserError::Taken(Taken::Email) => Problem::new(ProblemType::EmailTaken, detail),
            UserError::NotFound(_) => Problem::new(ProblemType::UserNotFound, detail),
            UserError::BillingUnavailable(cause) => Problem::unavailable(format!("{detail}: {cause}")),
            UserError::Key(refusal) => Problem::from(refusal),
            UserError::Hash(_) => Problem::internal("the password could not be stored"),
            UserError::Storage(s) => Problem::from(s),
        }
    }
}

service_kit::problem_response!(UserError);

/// A user.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": 1, "username": "ivan_petrov", "email": "ivan@example.com", "first_name": "Ivan",
    "last_name": "Petrov", "phone": "+7 999 123-45-67", "created_at": "2026-11-25T10:00:00Z"
}))]
pub struct UserBody {
    #[schema(minimum = 1)]
    pub id: i64,
    pub username: String,
    pub email: String,
    #[schema(required = true)]
    pub first_name: Option<String>,
    #[schema(required = true)]
    pub last_name: Option<String>,
    #[schema(required = true)]
    pub phone: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<User> for UserBody {
    fn from(u: User) -> Self {
        UserBody {
            id: u.id,
            username: u.username,
            email: u.email,
            first_name: u.first_name,
            last_name: u.last_name,
            phone: u.phone,
            created_at: time::utc(u.created_at),
        }
    }
}

/// A user to create.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "username": "ivan_petrov", "email": "ivan@example.com", "password": "correct horse battery",
    "first_name": "Ivan", "last_name": "Petrov", "phone": "+7 999 123-45-67"
}))]
pub struct NewUserRequest {
    /// 3 to 64 of `A-Z a-z 0-9 _ . -`; unique, compared case-insensitively.
    #[schema(min_length = 3, max_length = 64, pattern = "^[A-Za-z0-9_.-]{3,64}$")]
    pub username: String,
    /// A plausible address, at most 254 characters also when lower-cased;
    /// unique, compared case-insensitively.
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// 8 to 128 characters. Only a hash of it is kept; it is never shown.
    #[schema(min_length = 8, max_length = 128, format = Password)]
    pub password: String,
    /// At most 100 characters, no control characters.
    #[schema(max_length = 100, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    #[serde(default)]
    pub first_name: Option<String>,
    /// At most 100 characters, no control characters.
    #[schema(max_length = 100, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    #[serde(default)]
    pub last_name: Option<String>,
    /// 5 to 20 digits, optionally with `+ - ( )` and spaces.
    #[schema(max_length = 32, pattern = "^[+() -]*([0-9][+() -]*){5,20}$")]
    #[serde(default)]
    pub phone: Option<String>,
}

impl NewUserRequest {
    fn parse(self) -> Result<NewUser, UserError> {
        let username = Username::parse(&self.username)?;
        let email = Email::parse(&self.email)?;
        Ok(NewUser {
            username,
            email,
            password: Password::parse(self.password)?,
            first_name: optional_text("first_name", self.first_name, 100)?,
            last_name: optional_text("last_name", self.last_name, 100)?,
            phone: optional_phone(self.phone)?,
        })
    }
}

/// Create a user
///
/// Stores the user and opens its billing account (balance 0) before
/// answering: a 201 means the account exists. With an `Idempotency-Key`,
/// a repeat with the same body returns the original answer.
#[utoipa::path(
    post,
    path = "/users",
    operation_id = "create_user",
    tag = "users",
    params(
        ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255,
            pattern = "^[\\x21-\\x7E]([\\x20-\\x7E]*[\\x21-\\x7E])?$", example = "3f1c2a9e-signup-1",
            description = "Makes a retry safe: the same key and body return the original answer \
                (1 to 255 visible ASCII characters; inner spaces allowed)"),
    ),
    request_body = NewUserRequest,
    responses(
        (status = 201, description = "Created, with its billing account", body = UserBody,
            headers(("Location" = String, description = "/users/{id}"))),
        (status = 400, description = "The body is malformed, or the Idempotency-Key is empty, too long or not visible ASCII", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Username or e-mail taken, or a request with this key is still in progress", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks its rules, or the key was used with another body", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "billing-service could not open the account; nothing was created", body = Problem, content_type = "application/problem+json"),
        BodyRefusals,
    )
)]
pub async fn create_user(
    users: web::Data<Users>,
    key: KeyHeader,
    body: JsonObject<NewUserRequest>,
) -> Result<HttpResponse, UserError> {
    let request = body.into_inner();
    let keyed = key.with(&request);
    let user = request.parse()?;
    Ok(match users.register(user, keyed).await? {
        Registration::Created(user) => answer_for(&user).to_response(),
        Registration::Replayed(answer) => answer.replay_response(),
    })
}

/// The answer to `POST /users` for a new user, as an Idempotency-Key keeps
/// it.
pub fn answer_for(user: &User) -> StoredResponse {
    StoredResponse {
        status: 201,
        body: serde_json::to_string(&UserBody::from(user.clone())).expect("a user always serializes"),
        location: Some(format!("/users/{}", user.id)),
    }
}

/// What reading a user answers, to the user and to a service alike (a bad
/// id: [`IdRefusal`]).
#[derive(utoipa::IntoResponses)]
pub enum UserAnswers {
    #[response(status = 200, description = "The user")]
    Found(UserBody),
    #[response(status = 404, description = "No such user", content_type = "application/problem+json")]
    NotFound(Problem),
}

/// Get your user
///
/// The user with this id, once it has a billing account (a user still being
/// created is not visible yet). A token reads its own user only.
#[utoipa::path(
    get,
    path = "/users/{id}",
    operation_id = "get_user",
    tag = "users",
    params(("id" = i64, Path, minimum = 1, example = 1, description = "The user's id")),
    responses(UserAnswers, IdRefusal)
)]
pub async fn get_user(users: web::Data<Users>, id: Path<Id>) -> Result<Json<UserBody>, UserError> {
    Ok(Json(users.find(id.into_inner().get()).await?.into()))
}

/// Read a user (for services)
///
/// The user with this id, for another service: order-service reads the
/// address of a letter here. Takes the service credential, never a user's
/// token.
#[utoipa::path(
    get,
    path = "/internal/users/{id}",
    operation_id = "get_user_internal",
    tag = "users",
    params(("id" = i64, Path, minimum = 1, example = 1, description = "The user's id")),
    responses(UserAnswers, IdRefusal)
)]
pub async fn get_user_internal(users: web::Data<Users>, id: Path<Id>) -> Result<Json<UserBody>, UserError> {
    // The same answer as a user's own read; only who may ask differs.
    get_user(users, id).await
}

/// A username and password to sign in with.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"username": "ivan_petrov", "password": "correct horse battery"}))]
pub struct SignInRequest {
    /// Compared case-insensitively.
    pub username: String,
    #[schema(format = Password)]
    pub password: String,
}

/// A bearer token for the user who signed in.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"access_token": "eyJhbGciOiJFZERTQSIs...", "token_type": "Bearer", "expires_in": 3600}))]
pub struct TokenBody {
    /// A JWT (EdDSA) acting for this user: send it as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    #[schema(value_type = String, example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until it expires.
    pub expires_in: u64,
}

impl From<&SignInError> for Problem {
    fn from(e: &SignInError) -> Problem {
        match e {
            SignInError::InvalidCredentials => Problem::new(ProblemType::InvalidCredentials, e.to_string()),
            SignInError::Throttled { .. } => Problem::new(ProblemType::TooManyRequests, e.to_string()),
            SignInError::Storage(s) => Problem::from(s),
        }
    }
}

impl actix_web::ResponseError for SignInError {
    fn status_code(&self) -> actix_web::http::StatusCode {
        Problem::from(self).status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let problem = Problem::from(self);
        if problem.status >= 500 {
            log::error!("{}", service_kit::problem::chain(self));
        }
        let mut res = problem.to_response();
        if let SignInError::Throttled { retry_after } = self {
            let value = actix_web::http::header::HeaderValue::from(*retry_after);
            res.headers_mut().insert(actix_web::http::header::RETRY_AFTER, value);
        }
        res
    }
}

/// Sign in
///
/// A bearer token for the user with this username and password. An unknown
/// username and a wrong password get the same 401. After 10 failed attempts
/// for a username within 15 minutes every attempt is refused (429,
/// `Retry-After`) until the oldest of them is 15 minutes old.
#[utoipa::path(
    post,
    path = "/users/tokens",
    operation_id = "sign_in",
    tag = "users",
    request_body = SignInRequest,
    responses(
        (status = 200, description = "Signed in", body = TokenBody),
        MalformedBody,
        (status = 401, description = "Unknown username or wrong password (invalid-credentials)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed attempts for this username", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds until the next attempt may be made"))),
        BodyRefusals,
    )
)]
pub async fn sign_in(
    signing: web::Data<SignIn>,
    body: JsonObject<SignInRequest>,
) -> Result<Json<TokenBody>, SignInError> {
    let SignInRequest { username, password } = body.into_inner();
    let issued = signing.sign_in(&username, password).await?;
    Ok(Json(TokenBody { access_token: issued.token, token_type: "Bearer", expires_in: issued.expires_in }))
}

/// The public signing keys
///
/// The JWK Set (Ed25519, `kty: OKP`) that checks the tokens user-service
/// signs; each token names its key with `kid`.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    operation_id = "get_jwks",
    tag = "users",
    responses(
        (status = 200, description = "The key set", body = Object,
            example = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k", "use": "sig", "alg": "EdDSA"}]})),
    )
)]
pub async fn jwks(signing: web::Data<SignIn>) -> HttpResponse {
    HttpResponse::Ok().json(signing.key.key_set())
}
