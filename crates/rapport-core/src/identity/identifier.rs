//! What counts as an identifier, and how each kind is normalised.
//!
//! Two events can only be joined if they spell the same identifier the same way, so every
//! value goes through one normaliser per kind before it reaches the graph: e-mail addresses
//! are trimmed and lower-cased, phone numbers are rewritten to E.164, other identifiers are
//! trimmed. A value that cannot be normalised is refused, never guessed.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// The longest identifier value accepted, in bytes. Longer values are almost always a whole
/// object or a token pasted by mistake, and would bloat every index that holds them.
pub const MAX_IDENTIFIER_LEN: usize = 256;

/// The type of an identifier. Serialised as its snake-case name (`user_id`, `email`, …);
/// custom types from `context.externalIds` keep their own (lower-cased) name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IdentifierKind {
    UserId,
    AnonymousId,
    Email,
    Phone,
    DeviceId,
    AdvertisingId,
    /// A type named in `context.externalIds[].type` that is none of the above.
    Custom(String),
}

impl IdentifierKind {
    /// The built-in kinds, in their default priority order.
    pub const BUILT_IN: [IdentifierKind; 6] = [
        IdentifierKind::UserId,
        IdentifierKind::Email,
        IdentifierKind::Phone,
        IdentifierKind::AnonymousId,
        IdentifierKind::DeviceId,
        IdentifierKind::AdvertisingId,
    ];

    pub fn as_str(&self) -> &str {
        match self {
            IdentifierKind::UserId => "user_id",
            IdentifierKind::AnonymousId => "anonymous_id",
            IdentifierKind::Email => "email",
            IdentifierKind::Phone => "phone",
            IdentifierKind::DeviceId => "device_id",
            IdentifierKind::AdvertisingId => "advertising_id",
            IdentifierKind::Custom(name) => name,
        }
    }

    /// Reads a kind name as written in rules or in `externalIds[].type`. Built-in names are
    /// recognised in snake or camel case (`user_id`, `userId`); anything else is a custom
    /// type, lower-cased. `None` if the name is empty, longer than 64 bytes or uses
    /// characters other than ASCII letters, digits, `_`, `-` and `.`.
    pub fn parse(name: &str) -> Option<IdentifierKind> {
        let name = name.trim();
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return None;
        }
        let lower = name.to_ascii_lowercase();
        Some(match lower.as_str() {
            "user_id" | "userid" => IdentifierKind::UserId,
            "anonymous_id" | "anonymousid" => IdentifierKind::AnonymousId,
            "email" => IdentifierKind::Email,
            "phone" => IdentifierKind::Phone,
            "device_id" | "deviceid" => IdentifierKind::DeviceId,
            "advertising_id" | "advertisingid" => IdentifierKind::AdvertisingId,
            _ => IdentifierKind::Custom(lower),
        })
    }
}

impl fmt::Display for IdentifierKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for IdentifierKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for IdentifierKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        IdentifierKind::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid identifier type {s:?}")))
    }
}

/// One normalised identifier: a kind and a value. Two identifiers are the same key in the
/// graph exactly when they are equal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Identifier {
    #[serde(rename = "type")]
    pub kind: IdentifierKind,
    pub value: String,
}

impl Identifier {
    pub fn new(kind: IdentifierKind, value: impl Into<String>) -> Identifier {
        Identifier {
            kind,
            value: value.into(),
        }
    }

    pub fn user_id(value: impl Into<String>) -> Identifier {
        Identifier::new(IdentifierKind::UserId, value)
    }

    pub fn anonymous_id(value: impl Into<String>) -> Identifier {
        Identifier::new(IdentifierKind::AnonymousId, value)
    }

    pub fn email(value: impl Into<String>) -> Identifier {
        Identifier::new(IdentifierKind::Email, value)
    }

    pub fn phone(value: impl Into<String>) -> Identifier {
        Identifier::new(IdentifierKind::Phone, value)
    }

    pub fn device_id(value: impl Into<String>) -> Identifier {
        Identifier::new(IdentifierKind::DeviceId, value)
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

/// Why a raw value could not be turned into an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormaliseError {
    #[error("value is longer than {MAX_IDENTIFIER_LEN} bytes")]
    TooLong,
    /// Control characters (NUL above all, which PostgreSQL's `text` cannot hold) never
    /// belong in an identifier.
    #[error("value contains a control character")]
    ControlCharacter,
    #[error("not an e-mail address")]
    InvalidEmail,
    #[error("phone number contains characters other than digits and separators")]
    PhoneCharacters,
    #[error("phone number has no country code and no default country is configured")]
    PhoneNoCountry,
    #[error("phone number has {0} digits; E.164 numbers have 7 to 15")]
    PhoneLength(usize),
    #[error("country calling codes never start with 0")]
    PhoneCountryZero,
}

/// Normalises a value of `kind`. Values are trimmed first; e-mails and phones get their own
/// rules, advertising ids (hex UUIDs, upper-case on iOS, lower-case on Android) are
/// lower-cased, and the other kinds keep their case, since user ids can be case-sensitive.
pub fn normalise(
    kind: &IdentifierKind,
    raw: &str,
    default_country_code: Option<&str>,
) -> Result<String, NormaliseError> {
    let value = raw.trim();
    if value.len() > MAX_IDENTIFIER_LEN {
        return Err(NormaliseError::TooLong);
    }
    if value.chars().any(char::is_control) {
        return Err(NormaliseError::ControlCharacter);
    }
    match kind {
        IdentifierKind::Email => normalise_email(value),
        IdentifierKind::Phone => normalise_phone(value, default_country_code),
        IdentifierKind::AdvertisingId => Ok(value.to_ascii_lowercase()),
        _ => Ok(value.to_owned()),
    }
}

/// Trims and lower-cases an e-mail address and checks its shape loosely: one `@`, a
/// non-empty local part, a domain with a dot and no empty label, no white space or angle
/// brackets. Provider-specific rewriting (dots and `+tags` at Gmail) is not applied: it is
/// wrong for other providers and would merge people who are different.
pub fn normalise_email(raw: &str) -> Result<String, NormaliseError> {
    let value = raw.trim().to_lowercase();
    if value.len() > MAX_IDENTIFIER_LEN {
        return Err(NormaliseError::TooLong);
    }
    let Some((local, domain)) = value.split_once('@') else {
        return Err(NormaliseError::InvalidEmail);
    };
    let bad_char = |c: char| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',');
    let ok = !local.is_empty()
        && local.len() <= 64
        && !domain.contains('@')
        && domain.contains('.')
        && domain.split('.').all(|label| !label.is_empty())
        && !value.chars().any(bad_char);
    if ok {
        Ok(value)
    } else {
        Err(NormaliseError::InvalidEmail)
    }
}

/// Rewrites a phone number to E.164 (`+` and 7 to 15 digits).
///
/// - Separators are dropped: spaces, `-`, `.`, `/`, parentheses. Any other character
///   (letters, `#`, extensions) makes the number invalid rather than guessed at.
/// - `+` or `00` starts an international number. A national trunk `0` written in
///   parentheses after the country code, as in `+44 (0)20 7946 0958`, is dropped.
/// - Anything else is a national number: with `default_country_code` (e.g. `"44"`), one
///   leading trunk `0` is dropped and the code prepended; for North America (`"1"`), a
///   leading `1` on an 11-digit number is the country code already. Without a default
///   country a national number is refused.
pub fn normalise_phone(
    raw: &str,
    default_country_code: Option<&str>,
) -> Result<String, NormaliseError> {
    let raw = raw.trim();
    let (international, rest) = if let Some(rest) = raw.strip_prefix('+') {
        (true, rest.replacen("(0)", "", 1))
    } else {
        (false, raw.to_owned())
    };
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '/' | '(' | ')' | '\u{a0}' => {}
            _ => return Err(NormaliseError::PhoneCharacters),
        }
    }
    let full = if international {
        digits
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest.to_owned()
    } else {
        let Some(cc) = default_country_code else {
            return Err(NormaliseError::PhoneNoCountry);
        };
        let national = if cc == "1" && digits.len() == 11 && digits.starts_with('1') {
            &digits[1..]
        } else {
            digits.strip_prefix('0').unwrap_or(&digits)
        };
        format!("{cc}{national}")
    };
    if full.starts_with('0') {
        return Err(NormaliseError::PhoneCountryZero);
    }
    if !(7..=15).contains(&full.len()) {
        return Err(NormaliseError::PhoneLength(full.len()));
    }
    Ok(format!("+{full}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            normalise_email("  Ann.Lee+News@Example.COM ").unwrap(),
            "ann.lee+news@example.com"
        );
        for bad in [
            "",
            "ann",
            "@example.com",
            "ann@",
            "ann@localhost",
            "ann@example..com",
            "ann@@example.com",
            "a b@example.com",
            "<ann@example.com>",
        ] {
            assert!(normalise_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn phones() {
        let ok: &[(&str, Option<&str>, &str)] = &[
            ("+44 20 7946 0958", None, "+442079460958"),
            ("+44 (0)20 7946-0958", None, "+442079460958"),
            ("0044 20 7946 0958", None, "+442079460958"),
            ("020 7946 0958", Some("44"), "+442079460958"),
            ("(415) 555-2671", Some("1"), "+14155552671"),
            ("1-415-555-2671", Some("1"), "+14155552671"),
            ("06.12.34.56.78", Some("33"), "+33612345678"),
            ("+1.415.555.2671", Some("44"), "+14155552671"),
        ];
        for (raw, cc, want) in ok {
            assert_eq!(normalise_phone(raw, *cc).as_deref(), Ok(*want), "{raw}");
        }
        assert_eq!(
            normalise_phone("020 7946 0958", None),
            Err(NormaliseError::PhoneNoCountry)
        );
        assert_eq!(
            normalise_phone("+44 20 7946 0958 ext 12", None),
            Err(NormaliseError::PhoneCharacters)
        );
        assert_eq!(
            normalise_phone("+123", None),
            Err(NormaliseError::PhoneLength(3))
        );
        assert_eq!(
            normalise_phone("+1234567890123456", None),
            Err(NormaliseError::PhoneLength(16))
        );
        assert_eq!(
            normalise_phone("+0441234567", None),
            Err(NormaliseError::PhoneCountryZero)
        );
        assert!(normalise_phone("", Some("44")).is_err());
    }

    #[test]
    fn kinds_round_trip() {
        for k in IdentifierKind::BUILT_IN {
            assert_eq!(IdentifierKind::parse(k.as_str()), Some(k.clone()));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(serde_json::from_str::<IdentifierKind>(&json).unwrap(), k);
        }
        assert_eq!(
            IdentifierKind::parse("userId"),
            Some(IdentifierKind::UserId)
        );
        assert_eq!(
            IdentifierKind::parse("GA_Client_Id"),
            Some(IdentifierKind::Custom("ga_client_id".into()))
        );
        assert_eq!(IdentifierKind::parse("a b"), None);
        assert_eq!(IdentifierKind::parse(""), None);
    }
}
