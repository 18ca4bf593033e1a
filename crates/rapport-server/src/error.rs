//! The one mapping from every error Rapport can report to an HTTP status and the JSON body
//! `{"error": {"code", "message", "field"?}}`. The codes and their statuses are one table,
//! [`rapport_api::Code`]; `docs/api-errors.md` documents it. Internal details are logged,
//! never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
pub use rapport_api::{Code, ErrorBody};
use rapport_core::event::{PayloadError, PayloadErrorCode};
use rapport_engine::EngineError;
use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(code.status()).expect("the table's statuses are valid"),
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

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(Code::NotFound, message)
    }

    pub fn internal() -> ApiError {
        ApiError::new(
            Code::Internal,
            "an internal error occurred; it has been logged",
        )
    }
}

/// The wire code of a refusal of the tracking API's parser.
pub fn payload_code(code: PayloadErrorCode) -> Code {
    match code {
        PayloadErrorCode::InvalidJson => Code::InvalidJson,
        PayloadErrorCode::InvalidUtf8 => Code::InvalidUtf8,
        PayloadErrorCode::TooDeep => Code::TooDeep,
        PayloadErrorCode::PayloadTooLarge => Code::PayloadTooLarge,
        PayloadErrorCode::EventTooLarge => Code::EventTooLarge,
        PayloadErrorCode::TooManyEvents => Code::TooManyEvents,
        PayloadErrorCode::EmptyBatch => Code::EmptyBatch,
        PayloadErrorCode::MissingField => Code::MissingField,
        PayloadErrorCode::MissingIdentity => Code::MissingIdentity,
        PayloadErrorCode::InvalidFieldType => Code::InvalidFieldType,
        PayloadErrorCode::InvalidTimestamp => Code::InvalidTimestamp,
        PayloadErrorCode::InvalidType => Code::InvalidType,
        PayloadErrorCode::InvalidCharacter => Code::InvalidCharacter,
        PayloadErrorCode::ValueTooLong => Code::ValueTooLong,
        PayloadErrorCode::NumberOutOfRange => Code::NumberOutOfRange,
    }
}

pub fn payload_status(code: PayloadErrorCode) -> StatusCode {
    StatusCode::from_u16(payload_code(code).status()).expect("the table's statuses are valid")
}

/// A refusal of the tracking API's parser, as the wire carries it.
pub fn payload_body(e: &PayloadError) -> ErrorBody {
    ErrorBody {
        code: payload_code(e.code),
        message: e.message.clone(),
        field: e.field.clone(),
    }
}

impl From<PayloadError> for ApiError {
    fn from(e: PayloadError) -> Self {
        ApiError {
            status: payload_status(e.code),
            body: payload_body(&e),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Store(detail) => {
                tracing::error!(%detail, "storage error");
                rapport_engine::health::storage_error("api");
                ApiError::new(
                    Code::StorageUnavailable,
                    "events could not be stored; retry later",
                )
            }
            EngineError::Corrupt(detail) => {
                tracing::error!(%detail, "stored data is corrupt");
                ApiError::new(
                    Code::CorruptData,
                    "stored data could not be read; the details are in the server log",
                )
            }
            EngineError::Rejected(detail) => {
                tracing::warn!(%detail, "the store refused a value");
                ApiError::new(
                    Code::UnstorableValue,
                    "the request holds a value the store cannot keep (a NUL character, a value too long to index)",
                )
            }
            EngineError::ShuttingDown => {
                ApiError::new(Code::ShuttingDown, "Rapport is shutting down; retry later")
            }
            EngineError::Invalid { field, message } => {
                ApiError::new(Code::InvalidField, message).with_field(field)
            }
            EngineError::InvalidAt { field, message } => {
                ApiError::new(Code::InvalidField, message).with_field(field)
            }
            EngineError::NotFound(m) => ApiError::not_found(m),
            EngineError::Conflict(m) => ApiError::new(Code::Conflict, m),
            EngineError::InsufficientData(m) => ApiError::new(Code::InsufficientData, m),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parser_s_codes_are_the_wire_codes() {
        use PayloadErrorCode::*;
        for c in [
            InvalidJson,
            InvalidUtf8,
            TooDeep,
            PayloadTooLarge,
            EventTooLarge,
            TooManyEvents,
            EmptyBatch,
            MissingField,
            MissingIdentity,
            InvalidFieldType,
            InvalidTimestamp,
            InvalidType,
            InvalidCharacter,
            ValueTooLong,
            NumberOutOfRange,
        ] {
            assert_eq!(payload_code(c).as_str(), c.as_str());
        }
    }

    #[test]
    fn corrupt_stored_data_is_a_500_of_its_own() {
        let e = ApiError::from(rapport_store::StoreError::Corrupt("bad record".into()));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.body.code, "corrupt_data");
        assert!(!e.body.message.contains("bad record"));
    }
}
