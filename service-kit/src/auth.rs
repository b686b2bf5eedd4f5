//! Identity and access, the same for all four services.
//!
//! - A user's token is a JWT signed by user-service with Ed25519 (`EdDSA`),
//!   `kid` in its header; `sub` is the user id, `iss` `user-service`, `aud`
//!   `arch`. user-service checks tokens with its own key; the others with the
//!   key set it publishes at `/.well-known/jwks.json`, fetched and cached,
//!   fetched again for an unknown `kid`. While no key set can be had a
//!   protected route answers 503: never 401, never unchecked.
//! - Service-to-service calls carry the shared credential
//!   `INTERNAL_API_TOKEN`; internal routes accept nothing else.
//! - Every route says who may call it ([`Access`]) where it is declared
//!   ([`Endpoint`]); the guard in front of it answers 401 (and 403 for
//!   another user's id in the path or query) before anything else runs.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{Next, from_fn};
use actix_web::{FromRequest, Handler, HttpMessage, HttpRequest, Responder, Route, web};
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub use jsonwebtoken::jwk::JwkSet;

use crate::ids::Id;
use crate::peer::{Answer, Peer};
use crate::problem::{Problem, ProblemType};

/// The `iss` of every token.
pub const ISSUER: &str = "user-service";
/// The `aud` of every token.
pub const AUDIENCE: &str = "arch";
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
const LEEWAY_SECS: u64 = 60;
/// Where user-service publishes its public keys.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// An unknown `kid` makes the key set be fetched again, at most this often.
const REFETCH_AFTER: Duration = Duration::from_secs(5);

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `data`, in hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(data))
}

/// The shared service credential (`INTERNAL_API_TOKEN`): at least 32
/// visible ASCII characters. Never printed.
#[derive(Clone)]
pub struct ServiceCredential(Arc<str>);

impl FromStr for ServiceCredential {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() < 32 || !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err("must be at least 32 visible ASCII characters".into());
        }
        Ok(ServiceCredential(s.into()))
    }
}

impl std::fmt::Debug for ServiceCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceCredential(***)")
    }
}

impl ServiceCredential {
    /// 48 random characters, for a run that has none yet.
    pub fn generate() -> ServiceCredential {
        let mut bytes = [0u8; 36];
        getrandom::fill(&mut bytes).expect("the OS has randomness");
        let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()[..48].to_owned();
        ServiceCredential(text.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compared in constant time: how long the check takes says nothing
    /// about how much of a guess was right.
    pub fn matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq;
        let (ours, theirs) = (sha256_hex(self.0.as_bytes()), sha256_hex(presented.as_bytes()));
        bool::from(ours.as_bytes().ct_eq(theirs.as_bytes()))
    }
}

/// A token's claims.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: u64,
    exp: u64,
    iss: String,
    aud: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
}

/// Why a signing key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not an Ed25519 private key in PKCS#8 PEM")]
    Pem(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot derive the public key: {0}")]
    Public(#[source] jsonwebtoken::errors::Error),
}

/// user-service's signing key, with its public half as a JWK Set.
pub struct SigningKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    published: JwkSet,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// A token just issued.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
}

impl SigningKey {
    /// From an Ed25519 private key in PKCS#8 PEM (v1, as `openssl genpkey`
    /// and Helm's `genPrivateKey "ed25519"` write it, or v2 with the public
    /// key). Its `kid` is the RFC 7638 thumbprint of its public key.
    pub fn from_pem(pem: &[u8]) -> Result<SigningKey, KeyError> {
        use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, KeypairBytes};
        let text = std::str::from_utf8(pem).map_err(|e| KeyError::Pem(e.into()))?;
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(text).map_err(|e| KeyError::Pem(e.into()))?;
        // jsonwebtoken takes the 48-byte v1 form only.
        let v1 = KeypairBytes { secret_key: key.to_bytes(), public_key: None }
            .to_pkcs8_der()
            .map_err(|e| KeyError::Pem(e.into()))?;
        let encoding = EncodingKey::from_ed_der(v1.as_bytes());
        let mut public = Jwk::from_encoding_key(&encoding, Algorithm::EdDSA).map_err(KeyError::Public)?;
        let kid = public.thumbprint(ThumbprintHash::SHA256).map_err(KeyError::Public)?;
        public.common.key_id = Some(kid.clone());
        public.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        let decoding = DecodingKey::from_jwk(&public).map_err(KeyError::Public)?;
        Ok(SigningKey { encoding, decoding, kid, published: JwkSet { keys: vec![public] } })
    }

    /// A new key, and its PKCS#8 PEM to keep.
    pub fn generate() -> (SigningKey, String) {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the OS has randomness");
        let keypair = ed25519_dalek::pkcs8::KeypairBytes { secret_key: seed, public_key: None };
        let pem = keypair.to_pkcs8_pem(LineEnding::LF).expect("a key always encodes").to_string();
        (SigningKey::from_pem(pem.as_bytes()).expect("a generated key parses"), pem)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public keys, as `GET /.well-known/jwks.json` serves them.
    pub fn key_set(&self) -> &JwkSet {
        &self.published
    }

    /// A token for `user_id`, valid for `ttl`.
    pub fn issue(&self, user_id: i64, ttl: Duration) -> IssuedToken {
        let iat = now_secs();
        let claims = Claims {
            sub: user_id.to_string(),
            iat,
            exp: iat + ttl.as_secs(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            nbf: None,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding).expect("a token always signs");
        IssuedToken { token, expires_in: ttl.as_secs() }
    }
}

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token is not good: 401.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// No key set to check it with could be had: 503.
    #[error("the keys to check tokens with cannot be fetched: {0}")]
    KeysUnavailable(String),
}

/// Checks a token's signature with `key` and its claims; the user it acts for.
fn check(token: &str, key: &DecodingKey) -> Result<i64, TokenError> {
    let invalid = |e: &dyn std::fmt::Display| TokenError::Invalid(e.to_string());
    let mut rules = Validation::new(Algorithm::EdDSA);
    rules.algorithms = vec![Algorithm::EdDSA];
    rules.leeway = LEEWAY_SECS;
    rules.validate_nbf = true;
    rules.set_issuer(&[ISSUER]);
    rules.set_audience(&[AUDIENCE]);
    rules.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
    let data = jsonwebtoken::decode::<Claims>(token, key, &rules).map_err(|e| invalid(&e))?;
    if data.claims.iat > now_secs() + LEEWAY_SECS {
        return Err(TokenError::Invalid("issued in the future".into()));
    }
    data.claims
        .sub
        .parse::<i64>()
        .ok()
        .and_then(|id| Id::try_from(id).ok())
        .map(Id::get)
        .ok_or_else(|| TokenError::Invalid("sub is not a user id".into()))
}

/// The `kid` of a token that claims `EdDSA`.
fn kid_of(token: &str) -> Result<String, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
    if header.alg != Algorithm::EdDSA {
        return Err(TokenError::Invalid(format!("algorithm {:?} is not accepted", header.alg)));
    }
    header.kid.ok_or_else(|| TokenError::Invalid("no kid".into()))
}

/// What checks user tokens in a service.
pub enum TokenKeys {
    /// user-service: its own key.
    Own(Arc<SigningKey>),
    /// The others: user-service's published key set.
    Published(PublishedKeys),
}

impl TokenKeys {
    /// The user a token acts for.
    pub async fn verify(&self, token: &str) -> Result<i64, TokenError> {
        let kid = kid_of(token)?;
        match self {
            TokenKeys::Own(key) if key.kid == kid => check(token, &key.decoding),
            TokenKeys::Own(_) => Err(TokenError::Invalid("unknown kid".into())),
            TokenKeys::Published(keys) => check(token, &keys.key(&kid).await?),
        }
    }
}

/// user-service's JWK Set, fetched when first needed and again when a token
/// names a `kid` it does not hold (at most every few seconds).
pub struct PublishedKeys {
    users: Peer,
    /// The keys of the last set fetched, ready to check with, and when it
    /// was fetched. Read by every request without waiting on a fetch.
    known: std::sync::RwLock<Option<(HashMap<String, DecodingKey>, Instant)>>,
    /// Held across a fetch: one at a time.
    fetching: tokio::sync::Mutex<()>,
}

impl PublishedKeys {
    pub fn new(users: Peer) -> PublishedKeys {
        PublishedKeys { users, known: std::sync::RwLock::new(None), fetching: tokio::sync::Mutex::new(()) }
    }

    /// The key named `kid`, and whether a set was there to look in.
    fn lookup(&self, kid: &str) -> (Option<DecodingKey>, Option<Instant>) {
        let known = self.known.read().expect("key set lock");
        match known.as_ref() {
            Some((keys, at)) => (keys.get(kid).cloned(), Some(*at)),
            None => (None, None),
        }
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, TokenError> {
        let unknown = || TokenError::Invalid("unknown kid".into());
        if let (Some(key), _) = self.lookup(kid) {
            return Ok(key);
        }
        let _one_fetch = self.fetching.lock().await;
        // Someone may have fetched while this request waited.
        let (key, fetched_at) = self.lookup(kid);
        if let Some(key) = key {
            return Ok(key);
        }
        if fetched_at.is_some_and(|at| at.elapsed() < REFETCH_AFTER) {
            return Err(unknown());
        }
        match self.fetch().await {
            Ok(set) => {
                let keys: HashMap<String, DecodingKey> = set
                    .keys
                    .iter()
                    .filter_map(|jwk| Some((jwk.common.key_id.clone()?, DecodingKey::from_jwk(jwk).ok()?)))
                    .collect();
                let key = keys.get(kid).cloned();
                *self.known.write().expect("key set lock") = Some((keys, Instant::now()));
                key.ok_or_else(unknown)
            }
            // A stale set still judges the kids it knows (above); a token
            // with a new kid cannot be judged yet.
            Err(e) if fetched_at.is_some() => {
                log::warn!("cannot refresh the key set: {e}");
                Err(unknown())
            }
            Err(e) => Err(TokenError::KeysUnavailable(e)),
        }
    }

    async fn fetch(&self) -> Result<JwkSet, String> {
        let request = self.users.request_without_credential(reqwest::Method::GET, JWKS_PATH);
        match self.users.call::<JwkSet>(request).await {
            Ok(Answer::Success(_, set)) => Ok(set),
            Ok(Answer::Refused(problem)) => Err(problem.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, no token.
    Open,
    /// A user's token; the handler decides what that user may see.
    User,
    /// A user's token, acting for the user the named path or query
    /// parameter names (another user's id: 403).
    OwnUser(Named),
    /// Another service, with the service credential.
    Internal,
}

/// Where a request names a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    Path(&'static str),
    Query(&'static str),
}

/// Who is calling, as the guard found out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Anyone,
    User(i64),
    Service,
}

/// The user a request acts for (an extractor for routes behind
/// [`Access::User`] or [`Access::OwnUser`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthenticatedUser(pub i64);

impl FromRequest for AuthenticatedUser {
    type Error = Problem;
    type Future = std::future::Ready<Result<Self, Problem>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(match req.extensions().get::<Caller>() {
            Some(Caller::User(id)) => Ok(AuthenticatedUser(*id)),
            // A route declared without a user asked for one: a bug.
            _ => Err(Problem::internal("this route has no authenticated user")),
        })
    }
}

/// What a service checks callers with.
pub struct Gatekeeper {
    pub tokens: TokenKeys,
    pub credential: ServiceCredential,
}

impl Gatekeeper {
    /// For a service that checks tokens with the key set user-service
    /// publishes at `users`.
    pub fn with_published_keys(
        users: crate::config::BaseUrl,
        client: reqwest::Client,
        credential: ServiceCredential,
    ) -> Gatekeeper {
        let users = Peer::new("user-service", users, client);
        Gatekeeper { tokens: TokenKeys::Published(PublishedKeys::new(users)), credential }
    }
}

/// A route with the access it allows: the one place that says who may call
/// it.
#[derive(Clone)]
pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    route: Arc<dyn Fn() -> Route + Send + Sync>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({:?})", self.method, self.path, self.access)
    }
}

impl Endpoint {
    pub fn new<F, Args>(method: Method, path: &'static str, access: Access, handler: F) -> Endpoint
    where
        F: Handler<Args> + Clone + Send + Sync,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let route_method = method.clone();
        let route = Arc::new(move || web::method(route_method.clone()).to(handler.clone()));
        Endpoint { method, path, access, route }
    }
}

/// Mounts `endpoints`, each behind a guard for its access, one resource per
/// path (so a wrong method on a known path is still a 405, and an unknown
/// path a 404, before any token is asked for).
pub fn mount(cfg: &mut web::ServiceConfig, endpoints: &[Endpoint], gate: &Arc<Gatekeeper>) {
    let mut paths: Vec<&'static str> = Vec::new();
    for endpoint in endpoints {
        if !paths.contains(&endpoint.path) {
            paths.push(endpoint.path);
        }
    }
    for path in paths {
        let mut resource = web::resource(path);
        for endpoint in endpoints.iter().filter(|e| e.path == path) {
            let (gate, access) = (gate.clone(), endpoint.access);
            let route = (endpoint.route)().wrap(from_fn(move |req, next| guard(gate.clone(), access, req, next)));
            resource = resource.route(route);
        }
        cfg.service(resource);
    }
}

/// The bearer token of a request: `None` without one.
fn bearer(req: &ServiceRequest) -> Result<Option<String>, &'static str> {
    let mut values = req.headers().get_all(header::AUTHORIZATION);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("more than one Authorization header");
    }
    let text = value.to_str().map_err(|_| "the Authorization header is not text")?;
    match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(Some(token.trim().to_owned()))
        }
        _ => Ok(None),
    }
}

/// A 401 with `WWW-Authenticate` (RFC 6750): `error="invalid_token"` once a
/// token was sent.
fn unauthorized(detail: &str, token_sent: bool) -> actix_web::HttpResponse {
    let mut res = Problem::new(ProblemType::Unauthorized, detail).to_response();
    let challenge = if token_sent { r#"Bearer error="invalid_token""# } else { "Bearer" };
    res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    res
}

async fn guard<B: MessageBody + 'static>(
    gate: Arc<Gatekeeper>,
    access: Access,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let refuse = |req: ServiceRequest, res: actix_web::HttpResponse| Ok(req.into_response(res).map_into_right_body());
    if access == Access::Open {
        req.extensions_mut().insert(Caller::Anyone);
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    }
    let token = match bearer(&req) {
        Ok(Some(token)) => token,
        Ok(None) => return refuse(req, unauthorized("this route needs a bearer token", false)),
        Err(why) => return refuse(req, unauthorized(why, true)),
    };
    let caller = match access {
        Access::Internal if gate.credential.matches(&token) => Caller::Service,
        Access::Internal => {
            return refuse(req, unauthorized("this route is for the other services only", true));
        }
        _ => match gate.tokens.verify(&token).await {
            Ok(user) => Caller::User(user),
            Err(TokenError::Invalid(why)) => {
                log::info!("token refused: {why}");
                return refuse(req, unauthorized("the token is not valid", true));
            }
            Err(e @ TokenError::KeysUnavailable(_)) => {
                log::warn!("{e}");
                return refuse(req, Problem::unavailable("tokens cannot be checked right now").to_response());
            }
        },
    };
    if let (Access::OwnUser(named), Caller::User(user)) = (access, caller) {
        let named_id = match named {
            Named::Path(name) => req.match_info().get(name).map(str::to_owned),
            Named::Query(name) => {
                web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
                    .ok()
                    .and_then(|q| q.get(name).cloned())
            }
        };
        // An id that is not valid is the handler's 400; a valid one must be
        // the caller's own.
        if let Some(id) = named_id.and_then(|v| v.parse::<i64>().ok()).filter(|id| *id >= 1)
            && id != user
        {
            return refuse(
                req,
                Problem::new(ProblemType::Forbidden, format!("this token acts for user {user}, not {id}"))
                    .to_response(),
            );
        }
    }
    req.extensions_mut().insert(caller);
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_long_and_compared_whole() {
        assert!("short".parse::<ServiceCredential>().is_err());
        assert!("x".repeat(31).parse::<ServiceCredential>().is_err());
        assert!(format!("{} ", "x".repeat(32)).parse::<ServiceCredential>().is_err(), "no spaces");
        let c: ServiceCredential = "x".repeat(32).parse().unwrap();
        assert!(c.matches(&"x".repeat(32)));
        assert!(!c.matches(&"x".repeat(31)));
        assert!(!c.matches(&"x".repeat(33)));
        assert_eq!(format!("{c:?}"), "ServiceCredential(***)");
        assert_eq!(ServiceCredential::generate().expose().len(), 48);
    }

    #[test]
    fn issued_tokens_check_out_and_name_their_key() {
        let (key, pem) = SigningKey::generate();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
        let again = SigningKey::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(again.kid(), key.kid(), "the kid follows from the key");
        let issued = key.issue(42, Duration::from_secs(60));
        assert_eq!(kid_of(&issued.token).unwrap(), key.kid());
        assert_eq!(check(&issued.token, &key.decoding).unwrap(), 42);
        let jwk = serde_json::to_value(key.key_set()).unwrap();
        assert_eq!(jwk["keys"][0]["kty"], "OKP");
        assert_eq!(jwk["keys"][0]["crv"], "Ed25519");
        assert_eq!(jwk["keys"][0]["kid"], key.kid());
        assert!(jwk["keys"][0].get("d").is_none(), "no private part: {jwk}");
        let (other, _) = SigningKey::generate();
        assert!(check(&issued.token, &other.decoding).is_err(), "another key's signature");
    }
}
