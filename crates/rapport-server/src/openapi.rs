//! The OpenAPI 3.1 document of the tracking and REST APIs, generated from the handlers'
//! `#[utoipa::path]` attributes and the wire types of `rapport-api` (never written by
//! hand), served at `GET /openapi.json`, with a reference page at `/docs` (Swagger UI, its
//! assets embedded in the binary).

use rapport_api::ErrorEnvelope;
use std::collections::BTreeMap;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, PartialSchema};

/// The name of the admin-key scheme (`Authorization: Bearer <admin key>`).
pub const ADMIN_KEY: &str = "admin_key";
/// The name of the write-key scheme (HTTP Basic, the write key as user name, as Segment's
/// SDKs send it).
pub const WRITE_KEY: &str = "write_key";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Rapport",
        description = "The tracking API (wire-compatible with Segment's and RudderStack's HTTP APIs) and the REST API of Rapport, a real-time customer data platform. Errors are `{\"error\": {\"code\", \"message\", \"field\"?}}`; the codes are listed in `docs/api-errors.md`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&SecuritySchemes),
    // Every operation needs an admin key unless it says otherwise (the tracking API: a
    // write key; health, metrics and the settings document: none).
    security(("admin_key" = [])),
    components(schemas(ErrorEnvelope)),
    tags(
        (name = "tracking", description = "Sending events: Segment's and RudderStack's HTTP tracking API"),
        (name = "events", description = "Stored events, read back"),
        (name = "sources", description = "Where events come from, and their limits"),
        (name = "keys", description = "Write keys and admin keys"),
        (name = "profiles", description = "Unified customer profiles"),
        (name = "audiences", description = "Segments and computed traits"),
        (name = "value", description = "Value models (CLV, churn, health) and survey reports"),
        (name = "identity", description = "Identity rules, probabilistic matching and its review queue"),
        (name = "pipeline", description = "The pipeline's dead letters"),
        (name = "destinations", description = "Where Rapport delivers: webhooks and other tracking APIs, with retries and a dead-letter queue"),
        (name = "journeys", description = "Journeys: drafts, versions, publish, pause and archive, and where customers flow and stall"),
        (name = "privacy", description = "Deleting a person or a range of events, with receipts; suppressing identifiers"),
        (name = "audit", description = "The audit trail of administrative actions: read only"),
        (name = "operations", description = "Health and metrics"),
    ),
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            ADMIN_KEY,
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An admin key: `Authorization: Bearer <key>`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            WRITE_KEY,
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "A source's write key as the Basic user name, password empty: `Authorization: Basic base64(<key>:)`",
                    ))
                    .build(),
            ),
        );
    }
}

fn error_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            utoipa::openapi::ContentBuilder::new()
                .schema(Some(ErrorEnvelope::schema()))
                .build(),
        )
        .build()
        .into()
}

/// The error answers every route of `/api/v1` may give, for `responses(...)`.
pub struct AdminErrors;

impl utoipa::IntoResponses for AdminErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        [
            ("400", "the request is invalid: `field` names what (`invalid_parameter`, `invalid_json`, `invalid_field`, …)"),
            ("401", "no admin key, or one that is unknown or revoked"),
            ("403", "a write key, which may only send events (`forbidden`), or an admin key without the scope the route needs (`missing_scope`, `field` naming it)"),
            ("404", "no such object"),
            ("405", "the path does not take this method"),
            ("default", "any other error (`docs/api-errors.md`): `413 payload_too_large`, `415`, `500 internal`, `503 storage_unavailable`, …"),
        ]
        .into_iter()
        .map(|(status, d)| (status.to_owned(), error_response(d)))
        .collect()
    }
}

/// The error answers of the tracking API.
pub struct TrackingErrors;

impl utoipa::IntoResponses for TrackingErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        [
            ("400", "the message is invalid: `code` and `field` say why"),
            ("401", "no write key, or one that is unknown or revoked"),
            ("403", "the page's origin is not allowed"),
            ("405", "the path does not take this method"),
            ("413", "the body or a message is too large"),
            ("429", "the source's rate limit is exhausted; retry after `Retry-After` seconds"),
            ("default", "any other error (`docs/api-errors.md`): `415`, `500 internal`, `503 storage_unavailable`, …"),
        ]
        .into_iter()
        .map(|(status, d)| (status.to_owned(), error_response(d)))
        .collect()
    }
}

/// Completes the document gathered from the routers.
pub fn finish(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}
