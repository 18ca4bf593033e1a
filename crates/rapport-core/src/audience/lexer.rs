//! Turns segment source text into tokens with spans.
//!
//! Kept apart from the parser so that literal syntax (string escapes, numbers, durations such
//! as `30d`) is decided in one place and its errors name the exact characters at fault.

use super::ast::{DurationLit, DurationUnit};
use super::diagnostic::{Diagnostic, Span};

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    /// Names and keywords alike; the parser tells them apart by context.
    Ident(String),
    Str(String),
    Num(f64),
    Dur(DurationLit),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Minus,
    EqEq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Eof,
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub tok: Tok,
    pub span: Span,
}

/// Words with a meaning of their own; they can still name a field after a dot
/// (`properties.type`).
pub(crate) const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "not",
    "in",
    "is",
    "null",
    "true",
    "false",
    "within",
    "contains",
    "starts_with",
];

impl Tok {
    /// How the token is named in "found …" messages.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) if KEYWORDS.contains(&s.as_str()) => format!("'{s}'"),
            Tok::Ident(s) => format!("name '{s}'"),
            Tok::Str(s) => {
                let short: String = s.chars().take(24).collect();
                let ellipsis = if short.len() < s.len() { "…" } else { "" };
                format!("string \"{short}{ellipsis}\"")
            }
            Tok::Num(n) => format!("number {n}"),
            Tok::Dur(d) => format!("duration {d}"),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::LBracket => "'['".into(),
            Tok::RBracket => "']'".into(),
            Tok::Comma => "','".into(),
            Tok::Dot => "'.'".into(),
            Tok::Minus => "'-'".into(),
            Tok::EqEq => "'=='".into(),
            Tok::Ne => "'!='".into(),
            Tok::Lt => "'<'".into(),
            Tok::Le => "'<='".into(),
            Tok::Gt => "'>'".into(),
            Tok::Ge => "'>='".into(),
            Tok::Eof => "end of input".into(),
        }
    }
}

struct Cursor<'a> {
    src: &'a str,
    pos: usize,
    line: u32,
    column: u32,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        let mut it = self.src[self.pos..].chars();
        it.next();
        it.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn here(&self) -> Span {
        Span {
            start: self.pos,
            end: self.pos,
            line: self.line,
            column: self.column,
        }
    }

    fn from(&self, start: Span) -> Span {
        Span {
            end: self.pos,
            ..start
        }
    }
}

/// Splits `src` into tokens, ending with [`Tok::Eof`].
pub(crate) fn lex(src: &str) -> Result<Vec<Token>, Diagnostic> {
    let mut c = Cursor {
        src,
        pos: 0,
        line: 1,
        column: 1,
    };
    let mut out = Vec::new();
    loop {
        while c.peek().is_some_and(char::is_whitespace) {
            c.bump();
        }
        let start = c.here();
        let Some(ch) = c.bump() else {
            out.push(Token {
                tok: Tok::Eof,
                span: start,
            });
            return Ok(out);
        };
        let tok = match ch {
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '[' => Tok::LBracket,
            ']' => Tok::RBracket,
            ',' => Tok::Comma,
            '.' => Tok::Dot,
            '-' => Tok::Minus,
            '=' if c.peek() == Some('=') => {
                c.bump();
                Tok::EqEq
            }
            '=' => {
                return Err(Diagnostic::new(
                    "unexpected '=': use '==' to compare",
                    c.from(start),
                ));
            }
            '!' if c.peek() == Some('=') => {
                c.bump();
                Tok::Ne
            }
            '!' => {
                return Err(Diagnostic::new(
                    "unexpected '!': use 'not' to negate or '!=' to compare",
                    c.from(start),
                ));
            }
            '<' if c.peek() == Some('=') => {
                c.bump();
                Tok::Le
            }
            '<' => Tok::Lt,
            '>' if c.peek() == Some('=') => {
                c.bump();
                Tok::Ge
            }
            '>' => Tok::Gt,
            '"' => Tok::Str(string(&mut c, start)?),
            '\'' => {
                return Err(Diagnostic::new(
                    "strings are written in double quotes, e.g. \"pro\"",
                    c.from(start),
                ));
            }
            '0'..='9' => number(&mut c, start)?,
            ch if ch.is_ascii_alphabetic() || ch == '_' => {
                while c
                    .peek()
                    .is_some_and(|ch| ch.is_ascii_alphanumeric() || ch == '_')
                {
                    c.bump();
                }
                Tok::Ident(src[start.start..c.pos].to_string())
            }
            other => {
                let hint = if other == '&' || other == '|' {
                    ": use 'and' and 'or'"
                } else if other.is_alphabetic() {
                    ": names are ASCII; quote other field names, e.g. traits.\"prénom\""
                } else {
                    ""
                };
                return Err(Diagnostic::new(
                    format!("unexpected character '{}'{hint}", other.escape_debug()),
                    c.from(start),
                ));
            }
        };
        out.push(Token {
            tok,
            span: c.from(start),
        });
    }
}

fn string(c: &mut Cursor<'_>, start: Span) -> Result<String, Diagnostic> {
    let mut s = String::new();
    loop {
        let esc_start = c.here();
        match c.bump() {
            None => {
                return Err(Diagnostic::new(
                    "unterminated string: expected a closing '\"'",
                    c.from(start),
                ));
            }
            Some('"') => return Ok(s),
            Some('\\') => {
                let ch = match c.bump() {
                    Some('"') => '"',
                    Some('\\') => '\\',
                    Some('/') => '/',
                    Some('n') => '\n',
                    Some('r') => '\r',
                    Some('t') => '\t',
                    Some('u') => unicode_escape(c, esc_start)?,
                    Some(other) => {
                        return Err(Diagnostic::new(
                            format!(
                                "unknown escape '\\{}' in string (expected \\\", \\\\, \\/, \\n, \\r, \\t or \\u{{…}})",
                                other.escape_debug()
                            ),
                            c.from(esc_start),
                        ));
                    }
                    None => {
                        return Err(Diagnostic::new(
                            "unterminated string: expected a closing '\"'",
                            c.from(start),
                        ));
                    }
                };
                s.push(ch);
            }
            Some(ch) => s.push(ch),
        }
    }
}

fn unicode_escape(c: &mut Cursor<'_>, esc_start: Span) -> Result<char, Diagnostic> {
    let bad = |c: &Cursor<'_>| {
        Diagnostic::new(
            "bad unicode escape: expected \\u{…} with 1 to 6 hex digits naming a character",
            c.from(esc_start),
        )
    };
    if c.peek() != Some('{') {
        return Err(bad(c));
    }
    c.bump();
    let mut value: u32 = 0;
    let mut digits = 0;
    while let Some(d) = c.peek().and_then(|ch| ch.to_digit(16)) {
        c.bump();
        digits += 1;
        if digits > 6 {
            return Err(bad(c));
        }
        value = value * 16 + d;
    }
    if digits == 0 || c.peek() != Some('}') {
        return Err(bad(c));
    }
    c.bump();
    char::from_u32(value).ok_or_else(|| bad(c))
}

fn number(c: &mut Cursor<'_>, start: Span) -> Result<Tok, Diagnostic> {
    while c.peek().is_some_and(|ch| ch.is_ascii_digit()) {
        c.bump();
    }
    let mut fractional = false;
    if c.peek() == Some('.') && c.peek2().is_some_and(|ch| ch.is_ascii_digit()) {
        fractional = true;
        c.bump();
        while c.peek().is_some_and(|ch| ch.is_ascii_digit()) {
            c.bump();
        }
    }
    let digits_end = c.pos;
    if c.peek()
        .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
    {
        while c
            .peek()
            .is_some_and(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        {
            c.bump();
        }
        let text = &c.src[start.start..c.pos];
        let suffix = &c.src[digits_end..c.pos];
        let span = c.from(start);
        let Some(unit) = DurationUnit::from_suffix(suffix) else {
            return Err(Diagnostic::new(
                format!(
                    "bad duration '{text}': unknown unit '{suffix}' (expected w, d, h, m or s, e.g. 30d)"
                ),
                span,
            ));
        };
        if fractional {
            return Err(Diagnostic::new(
                format!("bad duration '{text}': the amount must be a whole number, e.g. 90m"),
                span,
            ));
        }
        let amount = c.src[start.start..digits_end].parse::<u64>().ok();
        let dur = amount.map(|amount| DurationLit { amount, unit });
        return match dur {
            Some(d)
                if d.amount.checked_mul(unit.seconds()).is_some()
                    && d.seconds() <= DurationLit::MAX_SECONDS =>
            {
                Ok(Tok::Dur(d))
            }
            _ => Err(Diagnostic::new(
                format!("bad duration '{text}': longer than the limit of 36500d"),
                span,
            )),
        };
    }
    let text = &c.src[start.start..c.pos];
    match text.parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(Tok::Num(n)),
        _ => Err(Diagnostic::new(
            format!("number '{text}' is too large"),
            c.from(start),
        )),
    }
}
