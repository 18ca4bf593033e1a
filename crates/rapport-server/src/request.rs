//! Reading request bodies and credentials ourselves, so that every refusal (too large, bad
//! gzip, malformed JSON, missing key) gets Rapport's error shape rather
//! than the framework's plain-text one.

use crate::error::ApiError;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;
use std::io::Read;

/// Reads at most `limit` bytes of body, inflating gzip when the client says so. The limit
/// applies after decompression, so a small bomb cannot expand past it.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body exceeds {limit} bytes"),
        )
    };
    let raw = axum::body::to_bytes(body, limit).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.to_string().contains("length limit")) {
            too_large()
        } else {
            ApiError::bad_request("invalid_body", "the request body could not be read")
        }
    })?;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("") | Some("identity") => Ok(raw.to_vec()),
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::with_capacity(raw.len() * 4);
            let mut decoder = flate2::read::GzDecoder::new(&raw[..]).take(limit as u64 + 1);
            decoder
                .read_to_end(&mut out)
                .map_err(|_| ApiError::bad_request("invalid_gzip", "the body is not valid gzip"))?;
            if out.len() > limit {
                return Err(too_large());
            }
            Ok(out)
        }
        Some(other) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_encoding",
            format!("Content-Encoding {other:?} is not supported; use gzip or none"),
        )),
    }
}

/// The secret presented in `Authorization`: HTTP Basic with the key as user name (Segment's
/// convention, password ignored) or `Bearer <key>`. `Ok(None)` when the header is absent.
pub fn presented_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || {
        ApiError::unauthorized(
            "invalid_authorization",
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

/// Parses a JSON request body of the REST API into `T`, naming the field on type errors.
pub fn parse_json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "invalid_json",
            "a JSON body is required",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let message = e.to_string();
        let field = message
            .split('`')
            .nth(1)
            .filter(|_| message.contains("field"))
            .map(str::to_owned);
        let err = ApiError::bad_request("invalid_json", format!("invalid request body: {message}"));
        match field {
            Some(f) => err.with_field(f),
            None => err,
        }
    })
}

/// `limit` of a paged list: 1 to 1000.
pub fn limit_param(v: &str) -> Result<usize, ApiError> {
    v.parse()
        .ok()
        .filter(|n| (1..=1000).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_parameter",
                "`limit` must be a whole number from 1 to 1000",
            )
            .with_field("limit")
        })
}

/// A query parameter the endpoint does not know.
pub fn unknown_param(k: &str) -> ApiError {
    ApiError::bad_request("invalid_parameter", format!("unknown parameter `{k}`")).with_field(k)
}

/// The `limit` (default 100) and `cursor` of a list paged by cursor; any other parameter
/// is refused.
pub fn cursor_page(raw: Option<String>) -> Result<(usize, Option<String>), ApiError> {
    let (mut limit, mut cursor) = (100usize, None);
    for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "limit" => limit = limit_param(&v)?,
            "cursor" => cursor = Some(v.into_owned()),
            _ => return Err(unknown_param(&k)),
        }
    }
    Ok((limit, cursor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

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
}
