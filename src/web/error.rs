//! Why a request failed, typed, and how each kind of endpoint answers it:
//! a page with the dashboard's error page ([`PageError`]), the JSON API with
//! `{"error": ...}` ([`ApiError`]). Handlers return `Result<Response, _>`
//! and end in `?`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    /// The request cannot be done now (a run already going).
    #[error("{0}")]
    Conflict(String),
    /// No scheduler to drive, or it is shutting down.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the request's work stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A failure with only words to say (a batch's template that would not
    /// render, a page that would not draw).
    #[error("{0}")]
    Internal(String),
}

impl WebError {
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Store(_) | WebError::Task(_) | WebError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

impl From<String> for WebError {
    fn from(message: String) -> Self {
        WebError::Internal(message)
    }
}

/// A page's failure: the error page, with the status.
#[derive(Debug)]
pub struct PageError(pub WebError);

impl<E: Into<WebError>> From<E> for PageError {
    fn from(e: E) -> Self {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        super::render::error_page(self.0.status(), self.0.to_string())
    }
}

/// The JSON API's failure: `{"error": ...}`, with the status.
#[derive(Debug)]
pub struct ApiError(pub WebError);

impl<E: Into<WebError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        (
            status,
            Json(serde_json::json!({ "error": self.0.to_string() })),
        )
            .into_response()
    }
}
