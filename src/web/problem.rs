//! Errors as RFC 9457 problem details (`application/problem+json`): every
//! refusal of the API, from a bad cursor to a forbidden list, is one JSON
//! object with a stable `type`, the HTTP `status`, a `title` and a `detail`
//! that says what to do. The pages (next round) render the same values.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::admin::AdminError;
use crate::store::StoreError;

/// The media type of a problem.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One problem, as the API answers it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// `urn:listrelay:problem:KIND`: what a client matches on.
    #[serde(rename = "type")]
    pub kind: String,
    /// The HTTP status phrase.
    pub title: String,
    /// The HTTP status, repeated for whoever logs only the body.
    pub status: u16,
    /// What went wrong and what to do.
    pub detail: String,
    /// The request path, when it helps to say which.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

impl Problem {
    /// A problem of `kind` with `status` and a `detail` for the caller.
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("urn:listrelay:problem:{kind}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            instance: None,
        }
    }

    pub fn bad_request(kind: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, kind, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// The server cannot take the request now (busy, timed out).
    pub fn unavailable(kind: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, kind, detail)
    }

    fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut r = (status, body).into_response();
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::UNAUTHORIZED {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"listrelay\""),
            );
        }
        r
    }
}

impl From<AdminError> for Problem {
    fn from(e: AdminError) -> Problem {
        match e {
            AdminError::NotFound(m) => Problem::not_found(m),
            AdminError::Invalid(m) => Problem::bad_request("invalid", m),
            AdminError::Store(StoreError::Exists(m)) => Problem::new(
                StatusCode::CONFLICT,
                "exists",
                format!("{m} already exists"),
            ),
            AdminError::Store(StoreError::NotFound(m)) => {
                Problem::not_found(format!("{m} not found"))
            }
            AdminError::Store(StoreError::Invalid(m)) => Problem::bad_request("invalid", m),
            AdminError::Store(StoreError::Closed) => Problem::unavailable(
                "shutting_down",
                "the server is shutting down; retry in a moment",
            ),
            e @ (AdminError::Store(_) | AdminError::Output(_)) => {
                tracing::warn!(error = %e, "API request failed in the store");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "store",
                    format!("{e}; retry, and see the server log if it persists"),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_is_rfc9457_json() {
        let p = Problem::forbidden("not yours");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "urn:listrelay:problem:forbidden", "title": "Forbidden",
                               "status": 403, "detail": "not yours"})
        );
        let r = p.into_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(r.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }

    #[test]
    fn admin_errors_map_to_statuses() {
        let cases = [
            (AdminError::NotFound("no list a@b".into()), 404),
            (AdminError::Invalid("bad".into()), 400),
            (AdminError::Store(StoreError::Exists("x".into())), 409),
            (AdminError::Store(StoreError::Closed), 503),
            (AdminError::Store(StoreError::Backend("disk".into())), 500),
        ];
        for (e, status) in cases {
            assert_eq!(Problem::from(e).status, status);
        }
    }
}
