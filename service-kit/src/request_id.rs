//! `X-Request-Id`: taken from the request when it is sane, generated
//! otherwise, echoed on the response, forwarded on every outgoing call and
//! written on every log line of the request.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static REQUEST_ID: String;
}

std::thread_local! {
    /// The request a blocking thread works for (`web::block` runs on a
    /// thread of its own, outside the task that holds the id).
    static BLOCKING_FOR: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// The id of the request this task (or this blocking thread) is serving,
/// if any.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok().or_else(|| BLOCKING_FOR.with(|id| id.borrow().clone()))
}

/// Runs blocking `work` as part of request `id` (taken with [`current`]
/// before leaving the task), so that its log lines carry the id.
pub fn on_blocking_thread<T>(id: Option<String>, work: impl FnOnce() -> T) -> T {
    struct Restore(Option<String>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            BLOCKING_FOR.with(|id| *id.borrow_mut() = previous);
        }
    }
    let _restore = Restore(BLOCKING_FOR.with(|slot| slot.replace(id)));
    work()
}

/// Runs `fut` as part of the request `id` (for work that outlives a handler,
/// like the recovery loop's calls).
pub async fn scope<F: std::future::Future>(id: String, fut: F) -> F::Output {
    REQUEST_ID.scope(id, fut).await
}

/// 1..=128 visible ASCII characters, else we make our own.
pub fn accept(value: &[u8]) -> Option<String> {
    let sane = (1..=128).contains(&value.len()) && value.iter().all(|b| (0x21..=0x7e).contains(b));
    sane.then(|| String::from_utf8_lossy(value).into_owned())
}

pub fn generate() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// Middleware: scopes the request's id, echoes it, logs one access line.
pub async fn propagate(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req.headers().get(&HEADER).and_then(|v| accept(v.as_bytes())).unwrap_or_else(generate);
    let header = HeaderValue::from_str(&id).expect("checked to be visible ASCII");
    let method = req.method().clone();
    let path = req.path().to_owned();
    let started = Instant::now();
    REQUEST_ID
        .scope(id, async move {
            let mut res = next.call(req).await?;
            res.headers_mut().insert(HEADER, header);
            let status = res.status().as_u16();
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            if path.starts_with("/health") || path == "/metrics" {
                log::debug!("{method} {path} {status} {ms:.1}ms");
            } else {
                log::info!("{method} {path} {status} {ms:.1}ms");
            }
            Ok(res)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_visible_ascii_up_to_128() {
        assert_eq!(accept(b"abc-123").as_deref(), Some("abc-123"));
        assert!(accept(&[b'a'; 128]).is_some());
        assert!(accept(&[b'a'; 129]).is_none());
        assert!(accept(b"").is_none());
        assert!(accept(b"has space").is_none());
        assert!(accept("ünï".as_bytes()).is_none());
    }

    #[test]
    fn blocking_threads_carry_the_id_they_are_given() {
        let seen = std::thread::spawn(|| {
            let inside = on_blocking_thread(Some("req-1".into()), current);
            (inside, current())
        })
        .join()
        .unwrap();
        assert_eq!(seen, (Some("req-1".into()), None), "set for the work only");
    }

    #[test]
    fn generated_ids_are_acceptable_and_distinct() {
        let a = generate();
        assert!(accept(a.as_bytes()).is_some());
        assert_ne!(a, generate());
    }
}
