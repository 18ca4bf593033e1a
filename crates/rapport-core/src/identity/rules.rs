//! The per-workspace identity rules: which identifiers outrank which, how many of each a
//! profile may hold, and which values are junk.
//!
//! They are data, not code, so that each workspace can tune them (stored as JSON, edited
//! through the API) and so that the resolver stays one pure function of rules, graph and
//! event. Defaults follow Segment Unify's.

use super::identifier::IdentifierKind;
use chrono::Duration;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The limit on one identifier type, per profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifierRule {
    #[serde(rename = "type")]
    pub kind: IdentifierKind,
    /// Most identifiers of this type one profile may hold.
    pub limit: u32,
    /// If set, only identifiers seen within this many days before the event count toward
    /// `limit`; older ones stay on the profile but no longer block new ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_days: Option<u32>,
}

/// The identity rules of one workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityRules {
    /// Identifier types in priority order, highest first, with their limits. Custom types
    /// not listed rank below every listed type, ordered by name.
    pub identifiers: Vec<IdentifierRule>,
    /// The limit of custom types not listed in `identifiers`.
    pub custom_limit: u32,
    /// Values ignored in every identifier type, compared after trimming and ignoring case.
    pub blocked_values: Vec<String>,
    /// Also ignore values made only of zeros and separators (`0000-00`, `00:00:00`), the
    /// placeholders devices report when an id is unavailable or tracking is limited.
    pub block_all_zeros: bool,
    /// Country calling code (digits, no `+`) for phone numbers written without one.
    pub default_country_code: Option<String>,
}

impl Default for IdentityRules {
    fn default() -> Self {
        let rule = |kind, limit| IdentifierRule {
            kind,
            limit,
            window_days: None,
        };
        IdentityRules {
            identifiers: vec![
                rule(IdentifierKind::UserId, 1),
                rule(IdentifierKind::Email, 5),
                rule(IdentifierKind::Phone, 5),
                rule(IdentifierKind::AnonymousId, 100),
                rule(IdentifierKind::DeviceId, 5),
                rule(IdentifierKind::AdvertisingId, 5),
            ],
            custom_limit: 5,
            blocked_values: DEFAULT_BLOCKED_VALUES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            block_all_zeros: true,
            default_country_code: None,
        }
    }
}

/// Placeholders that SDKs and forms send when they have no real value.
pub const DEFAULT_BLOCKED_VALUES: &[&str] = &[
    "",
    "null",
    "undefined",
    "anonymous",
    "0",
    "-1",
    "nil",
    "none",
    "nan",
    "[object object]",
];

/// A rule that cannot be used, naming the offending field (`identifiers[2].limit`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RulesError {
    pub field: String,
    pub message: String,
}

impl RulesError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        RulesError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// How an identifier type ranks: lower sorts first, i.e. has higher priority.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank(usize, IdentifierKind);

impl IdentityRules {
    /// Parses rules from JSON and validates them. Missing fields take their defaults.
    pub fn from_json(text: &str) -> Result<IdentityRules, RulesError> {
        let rules: IdentityRules = serde_json::from_str(text).map_err(|e| {
            // serde_json names the unknown or mistyped field in its message.
            RulesError::new("", e.to_string())
        })?;
        rules.validate()?;
        Ok(rules)
    }

    /// Checks that the rules can be applied.
    pub fn validate(&self) -> Result<(), RulesError> {
        let mut seen = BTreeSet::new();
        for (i, rule) in self.identifiers.iter().enumerate() {
            if !seen.insert(rule.kind.clone()) {
                return Err(RulesError::new(
                    format!("identifiers[{i}].type"),
                    format!("`{}` is listed twice", rule.kind),
                ));
            }
            if rule.limit == 0 {
                return Err(RulesError::new(
                    format!("identifiers[{i}].limit"),
                    "must be at least 1",
                ));
            }
            if rule.window_days == Some(0) {
                return Err(RulesError::new(
                    format!("identifiers[{i}].window_days"),
                    "must be at least 1 day, or absent for no window",
                ));
            }
        }
        if !seen.contains(&IdentifierKind::UserId) {
            return Err(RulesError::new(
                "identifiers",
                "`user_id` must be listed: it is the identifier every workspace has",
            ));
        }
        if self.custom_limit == 0 {
            return Err(RulesError::new("custom_limit", "must be at least 1"));
        }
        for (i, v) in self.blocked_values.iter().enumerate() {
            if v.len() > 256 {
                return Err(RulesError::new(
                    format!("blocked_values[{i}]"),
                    "longer than 256 bytes; no identifier can match it",
                ));
            }
        }
        if let Some(cc) = &self.default_country_code {
            let ok = (1..=3).contains(&cc.len())
                && cc.bytes().all(|b| b.is_ascii_digit())
                && !cc.starts_with('0');
            if !ok {
                return Err(RulesError::new(
                    "default_country_code",
                    "must be 1 to 3 digits without `+`, not starting with 0 (e.g. \"44\")",
                ));
            }
        }
        Ok(())
    }

    /// The priority rank of `kind`; compare ranks to order identifiers, highest first.
    pub fn rank(&self, kind: &IdentifierKind) -> Rank {
        match self.identifiers.iter().position(|r| &r.kind == kind) {
            Some(i) => Rank(i, IdentifierKind::UserId),
            None => Rank(self.identifiers.len(), kind.clone()),
        }
    }

    /// The limit of `kind` and the window within which identifiers count toward it.
    pub fn limit(&self, kind: &IdentifierKind) -> (u32, Option<Duration>) {
        match self.identifiers.iter().find(|r| &r.kind == kind) {
            Some(r) => (r.limit, r.window_days.map(|d| Duration::days(i64::from(d)))),
            None => (self.custom_limit, None),
        }
    }

    /// Whether a (normalised) value is a placeholder to ignore.
    pub fn is_blocked(&self, value: &str) -> bool {
        let v = value.trim();
        if self.block_all_zeros
            && v.contains('0')
            && v.chars().all(|c| matches!(c, '0' | '-' | ':' | '.' | ' '))
        {
            return true;
        }
        self.blocked_values
            .iter()
            .any(|b| b.trim().eq_ignore_ascii_case(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let rules = IdentityRules::default();
        rules.validate().unwrap();
        let json = serde_json::to_string(&rules).unwrap();
        assert_eq!(IdentityRules::from_json(&json).unwrap(), rules);
        assert_eq!(IdentityRules::from_json("{}").unwrap(), rules);
    }

    #[test]
    fn validation_names_the_field() {
        let cases = [
            (
                r#"{"identifiers":[{"type":"user_id","limit":1},{"type":"email","limit":0}]}"#,
                "identifiers[1].limit",
            ),
            (
                r#"{"identifiers":[{"type":"user_id","limit":1},{"type":"userId","limit":2}]}"#,
                "identifiers[1].type",
            ),
            (
                r#"{"identifiers":[{"type":"user_id","limit":1,"window_days":0}]}"#,
                "identifiers[0].window_days",
            ),
            (
                r#"{"identifiers":[{"type":"email","limit":1}]}"#,
                "identifiers",
            ),
            (r#"{"default_country_code":"+44"}"#, "default_country_code"),
            (r#"{"custom_limit":0}"#, "custom_limit"),
        ];
        for (json, field) in cases {
            let err = IdentityRules::from_json(json).unwrap_err();
            assert_eq!(err.field, field, "{json}: {err}");
        }
        let err = IdentityRules::from_json(r#"{"limits":{}}"#).unwrap_err();
        assert!(err.message.contains("limits"), "{err}");
    }

    #[test]
    fn blocked_values() {
        let rules = IdentityRules::default();
        for v in [
            "",
            " NULL ",
            "Undefined",
            "anonymous",
            "0",
            "-1",
            "00000000-0000-0000-0000-000000000000",
            "00:00:00:00:00:00",
        ] {
            assert!(rules.is_blocked(v), "{v:?}");
        }
        for v in ["u1", "10", "0x", "-", "anonymous-1"] {
            assert!(!rules.is_blocked(v), "{v:?}");
        }
    }

    #[test]
    fn priority_and_limits() {
        let rules = IdentityRules::default();
        let custom = IdentifierKind::Custom("crm_id".into());
        assert!(rules.rank(&IdentifierKind::UserId) < rules.rank(&IdentifierKind::Email));
        assert!(rules.rank(&IdentifierKind::Email) < rules.rank(&IdentifierKind::Phone));
        assert!(rules.rank(&IdentifierKind::AdvertisingId) < rules.rank(&custom));
        assert!(
            rules.rank(&IdentifierKind::Custom("a".into()))
                < rules.rank(&IdentifierKind::Custom("b".into()))
        );
        assert_eq!(rules.limit(&IdentifierKind::UserId), (1, None));
        assert_eq!(rules.limit(&custom), (5, None));
    }
}
