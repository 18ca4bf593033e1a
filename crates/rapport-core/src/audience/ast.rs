//! The typed syntax tree of a segment expression, and its canonical printer.
//!
//! The tree keeps spans so the type checker can point at mistakes. Printing (`Display`) gives
//! canonical source text that parses back to the same tree (spans aside), which is what the
//! dashboard shows after saving and what the round-trip property test pins.

use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};

use super::diagnostic::{Span, Spanned};

/// A segment expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Literal(Literal),
    Path(Path),
    Not(Box<Expr>),
    /// Two or more operands; `a and b and c` is one node.
    And(Vec<Expr>),
    /// Two or more operands; `a or b or c` is one node.
    Or(Vec<Expr>),
    Compare {
        op: CompareOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// `lhs in [..]` or `lhs not in [..]`.
    In {
        negated: bool,
        lhs: Box<Expr>,
        items: Vec<Spanned<Literal>>,
    },
    /// `expr is null` or `expr is not null`.
    IsNull {
        negated: bool,
        expr: Box<Expr>,
    },
    /// An aggregate over the profile's event history, such as `count(event == "X", within 30d)`.
    Aggregate(AggregateCall),
    /// Any other function call, such as `in_segment("churned")`.
    Call {
        function: ScalarFunction,
        args: Vec<Expr>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct AggregateCall {
    pub kind: AggregateKind,
    /// The event property aggregated (`sum`, `avg`, `min`, `max`, `first`, `last`,
    /// `most_frequent`, `unique`, `unique_count`).
    pub property: Option<Spanned<Path>>,
    /// Which events count: a condition over `event`, `type` and `properties.…`.
    pub filter: Box<Expr>,
    /// `within <duration>`: only events newer than `now - window`.
    pub window: Option<Spanned<DurationLit>>,
}

/// The aggregate functions as written. [`super::EventAggregate`] is their normalised form,
/// where `exists` becomes a `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AggregateKind {
    Count,
    Exists,
    Sum,
    Avg,
    Min,
    Max,
    First,
    Last,
    FirstSeen,
    LastSeen,
    MostFrequent,
    Unique,
    UniqueCount,
}

impl AggregateKind {
    pub const ALL: [AggregateKind; 13] = [
        AggregateKind::Count,
        AggregateKind::Exists,
        AggregateKind::Sum,
        AggregateKind::Avg,
        AggregateKind::Min,
        AggregateKind::Max,
        AggregateKind::First,
        AggregateKind::Last,
        AggregateKind::FirstSeen,
        AggregateKind::LastSeen,
        AggregateKind::MostFrequent,
        AggregateKind::Unique,
        AggregateKind::UniqueCount,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AggregateKind::Count => "count",
            AggregateKind::Exists => "exists",
            AggregateKind::Sum => "sum",
            AggregateKind::Avg => "avg",
            AggregateKind::Min => "min",
            AggregateKind::Max => "max",
            AggregateKind::First => "first",
            AggregateKind::Last => "last",
            AggregateKind::FirstSeen => "first_seen",
            AggregateKind::LastSeen => "last_seen",
            AggregateKind::MostFrequent => "most_frequent",
            AggregateKind::Unique => "unique",
            AggregateKind::UniqueCount => "unique_count",
        }
    }

    /// Whether the first argument is an event property (`sum(properties.revenue, …)`).
    pub fn takes_property(self) -> bool {
        matches!(
            self,
            AggregateKind::Sum
                | AggregateKind::Avg
                | AggregateKind::Min
                | AggregateKind::Max
                | AggregateKind::First
                | AggregateKind::Last
                | AggregateKind::MostFrequent
                | AggregateKind::Unique
                | AggregateKind::UniqueCount
        )
    }
}

/// Functions that are not aggregates over events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScalarFunction {
    /// `in_segment("name")`: membership of another segment.
    InSegment,
    /// `has_identifier("email")`: the profile holds at least one identifier of that type.
    HasIdentifier,
    /// `since(ts)`: the duration from `ts` to now.
    Since,
    /// `days_since(ts)`: whole days from `ts` to now.
    DaysSince,
    /// `ago(duration)`: the instant `now - duration`.
    Ago,
    /// `timestamp(x)`: reads a string as a date or timestamp.
    Timestamp,
}

impl ScalarFunction {
    pub const ALL: [ScalarFunction; 6] = [
        ScalarFunction::InSegment,
        ScalarFunction::HasIdentifier,
        ScalarFunction::Since,
        ScalarFunction::DaysSince,
        ScalarFunction::Ago,
        ScalarFunction::Timestamp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ScalarFunction::InSegment => "in_segment",
            ScalarFunction::HasIdentifier => "has_identifier",
            ScalarFunction::Since => "since",
            ScalarFunction::DaysSince => "days_since",
            ScalarFunction::Ago => "ago",
            ScalarFunction::Timestamp => "timestamp",
        }
    }

    /// A short usage line for error messages.
    pub fn usage(self) -> &'static str {
        match self {
            ScalarFunction::InSegment => "in_segment(\"<segment name>\")",
            ScalarFunction::HasIdentifier => "has_identifier(\"<identifier type>\")",
            ScalarFunction::Since => "since(<timestamp>)",
            ScalarFunction::DaysSince => "days_since(<timestamp>)",
            ScalarFunction::Ago => "ago(<duration>)",
            ScalarFunction::Timestamp => "timestamp(<string>)",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    StartsWith,
}

impl CompareOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
            CompareOp::Contains => "contains",
            CompareOp::StartsWith => "starts_with",
        }
    }

    pub fn is_ordering(self) -> bool {
        matches!(
            self,
            CompareOp::Lt | CompareOp::Le | CompareOp::Gt | CompareOp::Ge
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    /// Always finite.
    Number(f64),
    String(String),
    Duration(DurationLit),
}

/// A duration as written, such as `30d`. Always at most [`DurationLit::MAX_SECONDS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DurationLit {
    pub amount: u64,
    pub unit: DurationUnit,
}

impl DurationLit {
    /// 100 years: longer windows are surely mistakes, and the cap keeps arithmetic on
    /// timestamps far from overflow.
    pub const MAX_SECONDS: u64 = 36_500 * 86_400;

    pub fn seconds(self) -> u64 {
        self.amount.saturating_mul(self.unit.seconds())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DurationUnit {
    Weeks,
    Days,
    Hours,
    Minutes,
    Seconds,
}

impl DurationUnit {
    pub fn from_suffix(s: &str) -> Option<DurationUnit> {
        Some(match s {
            "w" => DurationUnit::Weeks,
            "d" => DurationUnit::Days,
            "h" => DurationUnit::Hours,
            "m" => DurationUnit::Minutes,
            "s" => DurationUnit::Seconds,
            _ => return None,
        })
    }

    pub fn suffix(self) -> &'static str {
        match self {
            DurationUnit::Weeks => "w",
            DurationUnit::Days => "d",
            DurationUnit::Hours => "h",
            DurationUnit::Minutes => "m",
            DurationUnit::Seconds => "s",
        }
    }

    pub fn seconds(self) -> u64 {
        match self {
            DurationUnit::Weeks => 7 * 86_400,
            DurationUnit::Days => 86_400,
            DurationUnit::Hours => 3_600,
            DurationUnit::Minutes => 60,
            DurationUnit::Seconds => 1,
        }
    }
}

/// A field reference. Profile fields are used at the top level; event fields only inside the
/// filter of an aggregate.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Path {
    /// `traits.a.b`: a (possibly nested) profile trait.
    Trait(Vec<String>),
    /// `computed.name`: a computed trait declared in the schema.
    Computed(String),
    /// `account.traits.a.b`: a trait of any of the profile's accounts.
    AccountTrait(Vec<String>),
    /// `identifiers.email`: any of the profile's identifiers of that type.
    Identifier(String),
    /// `consent.marketing`: whether that purpose is granted.
    Consent(String),
    /// `event`: the name of a track event.
    EventName,
    /// `type`: the event type (`track`, `page`, …).
    EventType,
    /// `properties.a.b`: an event property.
    Property(Vec<String>),
}

impl Path {
    pub fn is_event_field(&self) -> bool {
        matches!(self, Path::EventName | Path::EventType | Path::Property(_))
    }
}

impl Expr {
    pub fn new(kind: ExprKind, span: Span) -> Self {
        Expr { kind, span }
    }

    /// A copy with every span zeroed, for comparing trees regardless of layout.
    pub fn without_spans(&self) -> Expr {
        let kind = match &self.kind {
            ExprKind::Literal(l) => ExprKind::Literal(l.clone()),
            ExprKind::Path(p) => ExprKind::Path(p.clone()),
            ExprKind::Not(e) => ExprKind::Not(Box::new(e.without_spans())),
            ExprKind::And(es) => ExprKind::And(es.iter().map(Expr::without_spans).collect()),
            ExprKind::Or(es) => ExprKind::Or(es.iter().map(Expr::without_spans).collect()),
            ExprKind::Compare { op, lhs, rhs } => ExprKind::Compare {
                op: *op,
                lhs: Box::new(lhs.without_spans()),
                rhs: Box::new(rhs.without_spans()),
            },
            ExprKind::In {
                negated,
                lhs,
                items,
            } => ExprKind::In {
                negated: *negated,
                lhs: Box::new(lhs.without_spans()),
                items: items
                    .iter()
                    .map(|i| Spanned::new(i.node.clone(), Span::default()))
                    .collect(),
            },
            ExprKind::IsNull { negated, expr } => ExprKind::IsNull {
                negated: *negated,
                expr: Box::new(expr.without_spans()),
            },
            ExprKind::Aggregate(a) => ExprKind::Aggregate(AggregateCall {
                kind: a.kind,
                property: a
                    .property
                    .as_ref()
                    .map(|p| Spanned::new(p.node.clone(), Span::default())),
                filter: Box::new(a.filter.without_spans()),
                window: a
                    .window
                    .as_ref()
                    .map(|w| Spanned::new(w.node, Span::default())),
            }),
            ExprKind::Call { function, args } => ExprKind::Call {
                function: *function,
                args: args.iter().map(Expr::without_spans).collect(),
            },
        };
        Expr::new(kind, Span::default())
    }

    /// Calls `f` on this node and every node below it, parents first.
    pub fn walk<'a>(&'a self, f: &mut dyn FnMut(&'a Expr)) {
        f(self);
        match &self.kind {
            ExprKind::Literal(_) | ExprKind::Path(_) => {}
            ExprKind::Not(e) | ExprKind::IsNull { expr: e, .. } | ExprKind::In { lhs: e, .. } => {
                e.walk(f)
            }
            ExprKind::And(es) | ExprKind::Or(es) | ExprKind::Call { args: es, .. } => {
                es.iter().for_each(|e| e.walk(f))
            }
            ExprKind::Compare { lhs, rhs, .. } => {
                lhs.walk(f);
                rhs.walk(f);
            }
            ExprKind::Aggregate(a) => a.filter.walk(f),
        }
    }

    fn precedence(&self) -> u8 {
        match self.kind {
            ExprKind::Or(_) => 1,
            ExprKind::And(_) => 2,
            ExprKind::Not(_) => 3,
            ExprKind::Compare { .. } | ExprKind::In { .. } | ExprKind::IsNull { .. } => 4,
            _ => 5,
        }
    }

    fn fmt_at(&self, f: &mut fmt::Formatter<'_>, min: u8) -> fmt::Result {
        let parens = self.precedence() < min;
        if parens {
            f.write_char('(')?;
        }
        match &self.kind {
            ExprKind::Literal(l) => write!(f, "{l}")?,
            ExprKind::Path(p) => write!(f, "{p}")?,
            ExprKind::Not(e) => {
                f.write_str("not ")?;
                e.fmt_at(f, 3)?;
            }
            ExprKind::And(es) | ExprKind::Or(es) => {
                let (word, prec) = match self.kind {
                    ExprKind::And(_) => (" and ", 2),
                    _ => (" or ", 1),
                };
                for (i, e) in es.iter().enumerate() {
                    if i > 0 {
                        f.write_str(word)?;
                    }
                    // A nested node of the same operator needs parentheses to stay nested.
                    e.fmt_at(f, prec + 1)?;
                }
            }
            ExprKind::Compare { op, lhs, rhs } => {
                lhs.fmt_at(f, 5)?;
                write!(f, " {} ", op.symbol())?;
                rhs.fmt_at(f, 5)?;
            }
            ExprKind::In {
                negated,
                lhs,
                items,
            } => {
                lhs.fmt_at(f, 5)?;
                f.write_str(if *negated { " not in [" } else { " in [" })?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}", item.node)?;
                }
                f.write_char(']')?;
            }
            ExprKind::IsNull { negated, expr } => {
                expr.fmt_at(f, 5)?;
                f.write_str(if *negated { " is not null" } else { " is null" })?;
            }
            ExprKind::Aggregate(a) => {
                write!(f, "{}(", a.kind.name())?;
                if let Some(p) = &a.property {
                    write!(f, "{}, ", p.node)?;
                }
                a.filter.fmt_at(f, 1)?;
                if let Some(w) = &a.window {
                    write!(f, ", within {}", w.node)?;
                }
                f.write_char(')')?;
            }
            ExprKind::Call { function, args } => {
                write!(f, "{}(", function.name())?;
                for (i, e) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    e.fmt_at(f, 1)?;
                }
                f.write_char(')')?;
            }
        }
        if parens {
            f.write_char(')')?;
        }
        Ok(())
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_at(f, 0)
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Null => f.write_str("null"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Number(n) => write!(f, "{n}"),
            Literal::String(s) => write_string(f, s),
            Literal::Duration(d) => write!(f, "{d}"),
        }
    }
}

impl fmt::Display for DurationLit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.amount, self.unit.suffix())
    }
}

/// Writes a string literal with the escapes the lexer understands.
pub(crate) fn write_string(f: &mut impl fmt::Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() => write!(f, "\\u{{{:x}}}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

pub(crate) fn is_plain_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn write_segments(f: &mut fmt::Formatter<'_>, root: &str, segments: &[String]) -> fmt::Result {
    f.write_str(root)?;
    for s in segments {
        f.write_char('.')?;
        if is_plain_name(s) {
            f.write_str(s)?;
        } else {
            write_string(f, s)?;
        }
    }
    Ok(())
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Trait(s) => write_segments(f, "traits", s),
            Path::Computed(n) => write_segments(f, "computed", std::slice::from_ref(n)),
            Path::AccountTrait(s) => write_segments(f, "account.traits", s),
            Path::Identifier(n) => write_segments(f, "identifiers", std::slice::from_ref(n)),
            Path::Consent(n) => write_segments(f, "consent", std::slice::from_ref(n)),
            Path::EventName => f.write_str("event"),
            Path::EventType => f.write_str("type"),
            Path::Property(s) => write_segments(f, "properties", s),
        }
    }
}
