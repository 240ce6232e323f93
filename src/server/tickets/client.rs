//! The api's HTTP client to the other services: pooled keep-alive connections (hyper-util's
//! client), a deadline per call, and answers sorted by what the caller may conclude: a call
//! that never reached the service changed nothing there; one that failed after it was sent
//! may have been applied.

use std::time::Duration;

use axum::http::{Method, Request, StatusCode, Uri, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Longest wait for one call to another service.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read from another service.
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// Why a call to another service gave no answer.
#[derive(Debug)]
pub enum CallError {
    /// The service could not be reached: the request was never sent, nothing changed there.
    Unreachable(String),
    /// The request may have been received and applied, but no answer came back.
    Unknown(String),
}

impl CallError {
    /// A description for logs and error answers.
    pub fn describe(&self) -> &str {
        match self {
            CallError::Unreachable(m) | CallError::Unknown(m) => m,
        }
    }
}

/// One other service: its name (for messages) and base URL.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// `shows` or `reservations`.
    pub name: &'static str,
    base: String,
}

impl Upstream {
    /// An upstream at `http://host:port` (no TLS: the services talk over loopback).
    pub fn new(name: &'static str, url: &str) -> Result<Upstream, String> {
        let base = url.trim_end_matches('/').to_owned();
        let parsed: Uri = base
            .parse()
            .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        if parsed.scheme_str() != Some("http") || parsed.host().is_none() {
            return Err(format!("{url:?} must look like http://127.0.0.1:3001"));
        }
        if parsed.path().len() > 1 || parsed.query().is_some() {
            return Err(format!("{url:?} must have no path or query"));
        }
        Ok(Upstream { name, base })
    }
}

/// A pooled client.
#[derive(Clone, Debug)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    /// A client with keep-alive connections.
    pub fn new() -> Http {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CALL_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(5))
            .build(connector);
        Http { client }
    }

    /// Sends `method path` with an optional JSON body; answers the status and the JSON
    /// body (`null` if it is empty or not JSON).
    pub async fn call(
        &self,
        to: &Upstream,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), CallError> {
        let (status, bytes) = self.call_raw(to, method, path, body).await?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// Like [`Http::call`], answering the body's bytes as they came.
    pub async fn call_raw(
        &self,
        to: &Upstream,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Bytes), CallError> {
        let uri = format!("{}{path}", to.base);
        let mut request = Request::builder().method(method).uri(&uri);
        let bytes = match body {
            Some(v) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(v).expect("JSON serializes"))
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(bytes))
            .map_err(|e| CallError::Unreachable(format!("bad request to {uri}: {e}")))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                let what = format!("the {} service ({uri}): {e}", to.name);
                if e.is_connect() {
                    CallError::Unreachable(what)
                } else {
                    CallError::Unknown(what)
                }
            })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| CallError::Unknown(format!("the {} service's answer: {e}", to.name)))?
                .to_bytes();
            Ok((status, body))
        };
        match tokio::time::timeout(CALL_TIMEOUT, exchange).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Unknown(format!(
                "the {} service did not answer {uri} within {} s",
                to.name,
                CALL_TIMEOUT.as_secs()
            ))),
        }
    }
}
