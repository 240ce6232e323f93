//! `GET /dashboard`: one self-contained page (HTML, CSS and JavaScript compiled into the
//! binary) that polls `/stats` about once a second and draws the cluster, its routes and its
//! shards.
//!
//! Invariants:
//! - The page loads nothing but itself and `/stats` from the server that served it: no CDN, no
//!   fonts, no build step. The Content-Security-Policy below makes the browser refuse
//!   anything else, so a page that grew an external dependency would break in the browser
//!   test rather than on a machine with no internet.
//! - It is read-only: it only ever sends `GET /stats`.
//! - Rates are computed in the page from successive answers. A worker's requests/s is taken
//!   from its own reports against its own `uptime_s`, so that a peer's report reaching
//!   `/stats` late (through the status file, up to about a second) makes no spike. Cluster,
//!   route and shard rates are taken from the totals over every worker, exited ones included,
//!   over a few seconds: a drained worker reports once more on exit, so a reload makes no
//!   false dip.
//! - When `/stats` fails the page says so and keeps polling; its own JavaScript errors are
//!   listed in `#js-errors`, which `tests/dashboard.rs` reads.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The page, embedded at compile time.
const PAGE: &str = include_str!("dashboard.html");

/// Inline script and style only; data only from this origin; no frames, forms or plugins.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
     connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// `GET /dashboard`.
pub async fn page() -> Response {
    let mut response = PAGE.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
