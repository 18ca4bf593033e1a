//! Reading request bodies, credentials and parameters ourselves, so that every refusal (too
//! large, bad gzip, malformed JSON, missing key, ambiguous headers, values no store can
//! hold) gets Rapport's error shape rather than the framework's plain-text one — and a 4xx,
//! never a storage error.

use crate::error::ApiError;
use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderName, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rapport_api::Code;
use rapport_core::event::MAX_NAME_BYTES;
use std::io::Read;

/// The one value of a header that must not be repeated: two answers to one question (which
/// key? which encoding?) are refused rather than guessed between.
fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    display: &str,
) -> Result<Option<&'a axum::http::HeaderValue>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::new(
            Code::DuplicateHeader,
            format!("`{display}` is sent more than once; send it once"),
        )
        .with_field(display));
    }
    Ok(first)
}

/// Reads at most `limit` bytes of body, inflating gzip when the client says so. The limit
/// applies after decompression, so a small bomb cannot expand past it.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::new(
            Code::PayloadTooLarge,
            format!("request body exceeds {limit} bytes"),
        )
    };
    // A declared length over the limit is refused before a byte is read.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let encoding = single_header(headers, &header::CONTENT_ENCODING, "Content-Encoding")?
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    let raw = axum::body::to_bytes(body, limit).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.to_string().contains("length limit")) {
            too_large()
        } else {
            ApiError::new(Code::InvalidBody, "the request body could not be read")
        }
    })?;
    match encoding.as_deref() {
        None | Some("") | Some("identity") => Ok(raw.to_vec()),
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::with_capacity(raw.len() * 4);
            let mut decoder = flate2::read::GzDecoder::new(&raw[..]).take(limit as u64 + 1);
            decoder
                .read_to_end(&mut out)
                .map_err(|_| ApiError::new(Code::InvalidGzip, "the body is not valid gzip"))?;
            if out.len() > limit {
                return Err(too_large());
            }
            Ok(out)
        }
        Some(other) => Err(ApiError::new(
            Code::UnsupportedContentEncoding,
            format!("Content-Encoding {other:?} is not supported; use gzip or none"),
        )),
    }
}

/// The secret presented in `Authorization`: HTTP Basic with the key as user name (Segment's
/// convention, password ignored) or `Bearer <key>`. `Ok(None)` when the header is absent;
/// `400 duplicate_header` when it is sent twice.
pub fn presented_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = single_header(headers, &header::AUTHORIZATION, "Authorization")? else {
        return Ok(None);
    };
    let malformed = || {
        ApiError::new(
            Code::InvalidAuthorization,
            "Authorization must be `Basic base64(key:)` or `Bearer key`",
        )
    };
    let value = value.to_str().map_err(|_| malformed())?.trim();
    let (scheme, rest) = value.split_once(' ').ok_or_else(malformed)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| malformed())?;
        let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
        let user = decoded.split_once(':').map_or(decoded.as_str(), |(u, _)| u);
        Ok(Some(user.to_owned()).filter(|u| !u.is_empty()))
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Ok(Some(rest.to_owned()).filter(|u| !u.is_empty()))
    } else {
        Err(malformed())
    }
}

/// Refuses a parameter value no backend can represent (a NUL character: PostgreSQL's `text`
/// cannot hold one) or longer than `max` bytes: `400 invalid_parameter` naming the parameter,
/// as ingest refuses such values in events (`rapport_core::event::MAX_ID_BYTES`,
/// `MAX_NAME_BYTES`).
pub fn check_value(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    let field = field.replace('\0', "\u{fffd}");
    if value.contains('\0') {
        return Err(ApiError::new(
            Code::InvalidParameter,
            format!("`{field}` contains a NUL character (%00)"),
        )
        .with_field(field));
    }
    if value.len() > max {
        return Err(ApiError::new(
            Code::InvalidParameter,
            format!(
                "`{field}` is {} bytes long, the limit is {max}",
                value.len()
            ),
        )
        .with_field(field));
    }
    Ok(())
}

/// Every path parameter and query value of a request, percent-decoded: valid UTF-8 (path),
/// no NUL, at most [`MAX_NAME_BYTES`]. Endpoints check tighter limits of their own (ids).
fn check_request_values(request: &Request) -> Result<(), ApiError> {
    if let Some(template) = request.extensions().get::<MatchedPath>() {
        let segments = template
            .as_str()
            .split('/')
            .zip(request.uri().path().split('/'));
        for (pattern, raw) in segments {
            let Some(name) = pattern.strip_prefix('{').and_then(|p| p.strip_suffix('}')) else {
                continue;
            };
            let name = name.trim_start_matches('*');
            let value = percent_encoding::percent_decode_str(raw)
                .decode_utf8()
                .map_err(|_| {
                    ApiError::new(
                        Code::InvalidParameter,
                        format!("`{name}` is not UTF-8 once percent-decoded"),
                    )
                    .with_field(name)
                })?;
            check_value(name, &value, MAX_NAME_BYTES)?;
        }
    }
    for (k, v) in form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes()) {
        check_value(&k, &k, MAX_NAME_BYTES)?;
        check_value(&k, &v, MAX_NAME_BYTES)?;
    }
    Ok(())
}

/// Middleware: refuses, before any handler runs, path parameters and query values that no
/// store can represent, so that such a read answers 400 naming the parameter rather than a
/// storage error (see [`check_value`]).
pub async fn refuse_unrepresentable(request: Request, next: Next) -> Response {
    match check_request_values(&request) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, StatusCode};

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn basic_and_bearer_credentials() {
        let basic = base64::engine::general_purpose::STANDARD.encode("wk_abc:");
        let h = headers(&[(header::AUTHORIZATION, &format!("Basic {basic}"))]);
        assert_eq!(presented_key(&h).unwrap().as_deref(), Some("wk_abc"));
        let h = headers(&[(header::AUTHORIZATION, "Bearer ak_xyz")]);
        assert_eq!(presented_key(&h).unwrap().as_deref(), Some("ak_xyz"));
        let h = headers(&[(header::AUTHORIZATION, "Basic !!!")]);
        assert_eq!(
            presented_key(&h).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(presented_key(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn a_repeated_authorization_header_is_refused() {
        let mut h = HeaderMap::new();
        h.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer ak_a"),
        );
        h.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer ak_b"),
        );
        let e = presented_key(&h).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.body.code, "duplicate_header");
        assert_eq!(e.body.field.as_deref(), Some("Authorization"));
    }

    #[test]
    fn values_no_store_can_hold_are_refused() {
        assert!(check_value("userId", "u1", 256).is_ok());
        let e = check_value("userId", "x\0y", 256).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.body.code, "invalid_parameter");
        assert_eq!(e.body.field.as_deref(), Some("userId"));
        let e = check_value("event", &"e".repeat(1025), 1024).unwrap_err();
        assert!(e.body.message.contains("1025 bytes"), "{}", e.body.message);
    }
}
