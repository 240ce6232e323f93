//! Request bodies of the ticket routes: a JSON object or a form, read into one map, then
//! each field checked by what it must be (an id, a name, a count).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde_json::{Map, Value};

use crate::registry::check_field;
use crate::server::error::ApiError;
use crate::tickets::{MAX_HOUSE, MAX_NAME_BYTES, check_id};

/// The fields of a JSON-object or form-encoded body.
pub struct Fields(Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for Fields {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let kind = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        let mime = kind.split(';').next().unwrap_or("").trim();
        if mime == "application/x-www-form-urlencoded" {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
                .map_err(|e| ApiError::bad_request(format!("the form body is invalid: {e}")))?;
            return Ok(Fields(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect(),
            ));
        }
        if !(mime.is_empty() || mime == "application/json" || mime.ends_with("+json")) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "send the body as application/json or application/x-www-form-urlencoded, \
                     not {mime}"
                ),
            ));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Fields(Map::new()));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(Fields(map)),
            Ok(_) => Err(ApiError::bad_request("the body must be a JSON object")),
            Err(e) => Err(ApiError::bad_request(format!(
                "the body is not valid JSON: {e}"
            ))),
        }
    }
}

impl Fields {
    fn text(&self, name: &str) -> Result<&str, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Err(ApiError::bad_request(format!(
                "the field {name} is required"
            ))),
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(ApiError::bad_request(format!(
                "the field {name} must be a string"
            ))),
        }
    }

    /// A show id, hold id or similar.
    pub fn id(&self, name: &str) -> Result<String, ApiError> {
        let text = self.text(name)?;
        check_id(name, text)?;
        Ok(text.to_owned())
    }

    /// An optional id.
    pub fn optional_id(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.id(name).map(Some),
        }
    }

    /// A name, by the dog registry's rules.
    pub fn name(&self, name: &str) -> Result<String, ApiError> {
        let text = self.text(name)?;
        check_field(name, text, MAX_NAME_BYTES)?;
        Ok(text.to_owned())
    }

    /// A whole number from 1 to [`MAX_HOUSE`]: a JSON number or a decimal string.
    pub fn count(&self, name: &str) -> Result<i64, ApiError> {
        let refuse = |shown: &dyn std::fmt::Display| {
            ApiError::bad_request(format!(
                "{name} must be a whole number from 1 to {MAX_HOUSE}, not {shown}"
            ))
        };
        let n = match self.0.get(name) {
            None | Some(Value::Null) => {
                return Err(ApiError::bad_request(format!(
                    "the field {name} is required"
                )));
            }
            Some(Value::Number(n)) => n.as_i64().ok_or_else(|| refuse(n))?,
            Some(Value::String(s)) => {
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(refuse(&format!("{s:?}")));
                }
                s.parse::<i64>().map_err(|_| refuse(&format!("{s:?}")))?
            }
            Some(other) => return Err(refuse(other)),
        };
        if (1..=MAX_HOUSE).contains(&n) {
            Ok(n)
        } else {
            Err(refuse(&n))
        }
    }

    /// A whole number of milliseconds, if given.
    pub fn optional_ms(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .filter(|n| (1..=super::MAX_HOLD_TTL.as_millis() as i64).contains(n))
                .map(Some)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "{name} must be a whole number of milliseconds up to a day"
                    ))
                }),
        }
    }
}
