//! Source positions and diagnostics.
//!
//! Segment definitions are typed by marketers in a dashboard, so every error must point at
//! the exact place in their text: a byte span for tools, a 1-based line and column for
//! people, and a caret rendering for the dashboard and the CLI.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A region of the source text: byte offsets `start..end`, plus the 1-based line and column
/// (counted in characters) of `start`, so a position can be shown without the source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub line: u32,
    pub column: u32,
}

impl Span {
    /// The span from the start of `self` to the end of `other`.
    pub fn to(self, other: Span) -> Span {
        Span {
            end: other.end.max(self.end),
            ..self
        }
    }
}

/// A value with the span of source text it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned<T> {
    pub node: T,
    pub span: Span,
}

impl<T> Spanned<T> {
    pub fn new(node: T, span: Span) -> Self {
        Spanned { node, span }
    }
}

/// One problem found in a segment definition, with where it is.
///
/// `Display` gives a one-line message such as `expected ')' after arguments of count(), found
/// end of input at 1:42`; [`Diagnostic::render`] adds the offending line and a caret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} at {}:{}", span.line, span.column)]
pub struct Diagnostic {
    pub message: String,
    pub span: Span,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>, span: Span) -> Self {
        Diagnostic {
            message: message.into(),
            span,
        }
    }

    /// The message followed by the source line and a caret under the offending text:
    ///
    /// ```text
    /// expected ')' after arguments of count(), found end of input at 1:19
    ///   |
    /// 1 | count(type == "page"
    ///   |                     ^
    /// ```
    pub fn render(&self, source: &str) -> String {
        let line_no = self.span.line.max(1) as usize;
        let line_text = source.split('\n').nth(line_no - 1).unwrap_or("");
        let line_text = line_text.strip_suffix('\r').unwrap_or(line_text);
        let line_start = source
            .split('\n')
            .take(line_no - 1)
            .map(|l| l.len() + 1)
            .sum::<usize>();
        let start = self
            .span
            .start
            .saturating_sub(line_start)
            .min(line_text.len());
        let end = self
            .span
            .end
            .saturating_sub(line_start)
            .clamp(start, line_text.len());
        let pad = char_count(line_text, 0, start);
        let width = char_count(line_text, start, end).max(1);
        let gutter = " ".repeat(line_no.to_string().len());
        format!(
            "{self}\n{gutter} |\n{line_no} | {line_text}\n{gutter} | {}{}",
            " ".repeat(pad),
            "^".repeat(width)
        )
    }
}

fn char_count(s: &str, from: usize, to: usize) -> usize {
    s.get(from..to).map_or(0, |t| t.chars().count())
}

/// Everything that can go wrong when defining a segment.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// The text is not a well-formed expression.
    #[error("syntax error: {0}")]
    Syntax(Diagnostic),
    /// The expression is well formed but meaningless against the schema (never empty).
    #[error("{}", TypeErrors(.0))]
    Type(Vec<Diagnostic>),
}

impl SegmentError {
    /// Every diagnostic, in source order.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            SegmentError::Syntax(d) => std::slice::from_ref(d),
            SegmentError::Type(ds) => ds,
        }
    }

    /// All diagnostics rendered with carets, separated by blank lines.
    pub fn render(&self, source: &str) -> String {
        self.diagnostics()
            .iter()
            .map(|d| d.render(source))
            .collect::<Vec<_>>()
            .join("\n\n")
    }
}

struct TypeErrors<'a>(&'a [Diagnostic]);

impl fmt::Display for TypeErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [] => write!(f, "type error"),
            [one] => write!(f, "type error: {one}"),
            [first, rest @ ..] => write!(f, "type error: {first} (and {} more)", rest.len()),
        }
    }
}
