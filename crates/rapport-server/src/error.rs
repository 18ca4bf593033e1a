//! The one mapping from every error Rapport can report to an HTTP status and the JSON body
//! `{"error": {"code", "message", "field"?}}`. Codes are stable and documented in
//! `docs/api-errors.md`; internal details are logged, never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rapport_core::event::{PayloadError, PayloadErrorCode};
use rapport_engine::EngineError;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                code,
                message: message.into(),
                field: None,
            },
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.body.field = Some(field.into());
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred; it has been logged",
        )
    }
}

pub fn payload_status(code: PayloadErrorCode) -> StatusCode {
    match code {
        PayloadErrorCode::PayloadTooLarge | PayloadErrorCode::EventTooLarge => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        _ => StatusCode::BAD_REQUEST,
    }
}

impl From<&PayloadError> for ErrorBody {
    fn from(e: &PayloadError) -> Self {
        ErrorBody {
            code: e.code.as_str(),
            message: e.message.clone(),
            field: e.field.clone(),
        }
    }
}

impl From<PayloadError> for ApiError {
    fn from(e: PayloadError) -> Self {
        ApiError {
            status: payload_status(e.code),
            body: ErrorBody::from(&e),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Store(detail) => {
                tracing::error!(%detail, "storage error");
                metrics::counter!("rapport_storage_errors_total").increment(1);
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "events could not be stored; retry later",
                )
            }
            EngineError::ShuttingDown => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "Rapport is shutting down; retry later",
            ),
            EngineError::Invalid { field, message } => {
                ApiError::bad_request("invalid_field", message).with_field(field)
            }
            EngineError::InvalidAt { field, message } => {
                ApiError::bad_request("invalid_field", message).with_field(field)
            }
            EngineError::NotFound(m) => ApiError::not_found(m),
            EngineError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            EngineError::InsufficientData(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "insufficient_data", m)
            }
        }
    }
}

impl From<rapport_store::StoreError> for ApiError {
    fn from(e: rapport_store::StoreError) -> Self {
        ApiError::from(EngineError::from(e))
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: &'a ErrorBody,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = axum::Json(Envelope { error: &self.body }).into_response();
        *res.status_mut() = self.status;
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"rapport\""),
            );
        }
        res
    }
}
