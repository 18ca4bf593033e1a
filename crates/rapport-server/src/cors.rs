//! CORS for the tracking API and the settings document, so that browser SDKs (Segment's
//! analytics.js, RudderStack's JS SDK) on a site's own origin can post to Rapport on another.
//! The admin REST API gets none: it is not meant to be called from web pages.
//!
//! What the browser SDKs need (read from analytics-next 1.84's source): a preflight, because
//! they send `Authorization: Basic …` and `X-Retry-Count`; a readable `Retry-After` on 429s;
//! and, when a site sets `credentials: 'include'`, the exact origin echoed with
//! `Access-Control-Allow-Credentials: true` (browsers refuse `*` for credentialed requests).
//! So an allowed origin is always echoed, never answered with `*`, and credentials are
//! allowed: the tracking API authenticates with write keys, never with cookies, so a
//! credentialed request gains nothing. Request headers are mirrored for the same reason —
//! the write key is the only gate, and a header list that missed one an SDK sends would
//! break that SDK silently.

use axum::http::{HeaderName, HeaderValue, Method, header};
use std::time::Duration;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

/// How long a browser may cache a preflight answer: Chromium caps it at two hours.
pub const MAX_AGE: Duration = Duration::from_secs(7200);

/// The origins whose pages may call the tracking API (`cors_allowed_origins`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// `*`: every origin (the default: a write key is public anyway, it ships in web pages).
    #[default]
    Any,
    /// Only these origins (`scheme://host[:port]`).
    List(Vec<String>),
}

impl AllowedOrigins {
    /// Reads the configured list: `["*"]` (or an empty list) is any origin; otherwise each
    /// entry must be an origin such as `https://shop.example.com` (no path, no trailing
    /// slash), since browsers send and compare exactly that.
    pub fn parse(items: &[String]) -> Result<AllowedOrigins, String> {
        let items: Vec<&str> = items.iter().map(|s| s.trim()).collect();
        if items.is_empty() || items == ["*"] {
            return Ok(AllowedOrigins::Any);
        }
        let mut list = Vec::with_capacity(items.len());
        for item in items {
            if item == "*" {
                return Err("`*` allows every origin and cannot be combined with others".into());
            }
            let rest = item
                .strip_prefix("https://")
                .or_else(|| item.strip_prefix("http://"))
                .ok_or_else(|| format!("{item:?} is not an origin such as https://example.com"))?;
            if rest.is_empty() || rest.contains('/') || HeaderValue::from_str(item).is_err() {
                return Err(format!(
                    "{item:?} is not an origin such as https://example.com (no path, no trailing slash)"
                ));
            }
            list.push(item.to_ascii_lowercase());
        }
        Ok(AllowedOrigins::List(list))
    }

    /// Whether a request carrying `Origin: origin` may send events. Browsers send `Origin`
    /// on every cross-origin POST, also on the "simple" `text/plain` ones that need no
    /// preflight, so refusing here (not only in the preflight) is what keeps pages of other
    /// origins out. A request without `Origin` (a server-side SDK) is not a page's.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            AllowedOrigins::Any => true,
            AllowedOrigins::List(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
    }
}

/// The layer put on the tracking routes: answers preflights and adds the CORS headers to
/// every response, errors included, so that an SDK can read why it was refused.
pub fn layer(origins: &AllowedOrigins) -> CorsLayer {
    let allow_origin = match origins {
        AllowedOrigins::Any => AllowOrigin::mirror_request(),
        AllowedOrigins::List(list) => AllowOrigin::list(
            list.iter()
                .map(|o| HeaderValue::from_str(o).expect("checked by AllowedOrigins::parse")),
        ),
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers(AllowHeaders::mirror_request())
        .allow_credentials(true)
        .expose_headers([
            header::RETRY_AFTER,
            HeaderName::from_static("x-ratelimit-reset"),
        ])
        .max_age(MAX_AGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(items: &[&str]) -> Result<AllowedOrigins, String> {
        AllowedOrigins::parse(&items.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn origins_are_checked() {
        assert_eq!(parse(&[]), Ok(AllowedOrigins::Any));
        assert_eq!(parse(&["*"]), Ok(AllowedOrigins::Any));
        assert_eq!(
            parse(&["https://Shop.example.com", "http://localhost:3000"]),
            Ok(AllowedOrigins::List(vec![
                "https://shop.example.com".into(),
                "http://localhost:3000".into()
            ]))
        );
        for bad in [
            &["https://shop.example.com/"][..],
            &["shop.example.com"],
            &["https://a.example", "*"],
            &["https://"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
