//! A hand-written recursive-descent parser for segment expressions.
//!
//! Hand-written so that each error can say what was expected in words a marketer knows
//! ("expected ')' after arguments of count()"), and so that nesting is bounded: input comes
//! from outside, and a deep enough `((((…` must be an error, never a stack overflow.

use super::ast::{
    AggregateCall, AggregateKind, CompareOp, Expr, ExprKind, Literal, Path, ScalarFunction,
};
use super::diagnostic::{Diagnostic, Span, Spanned};
use super::lexer::{KEYWORDS, Tok, Token, lex};

/// How deeply parentheses, `not` and calls may nest.
pub const MAX_NESTING: usize = 64;

/// Parses segment source text into a syntax tree. Never panics.
pub fn parse(source: &str) -> Result<Expr, Diagnostic> {
    let tokens = lex(source)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        depth: 0,
    };
    let expr = p.expr()?;
    let t = p.peek();
    if t.tok != Tok::Eof {
        return Err(p.unexpected("'and', 'or' or end of input", t));
    }
    Ok(expr)
}

enum Function {
    Aggregate(AggregateKind),
    Scalar(ScalarFunction),
}

fn lookup_function(name: &str) -> Option<Function> {
    AggregateKind::ALL
        .iter()
        .find(|k| k.name() == name)
        .map(|k| Function::Aggregate(*k))
        .or_else(|| {
            ScalarFunction::ALL
                .iter()
                .find(|f| f.name() == name)
                .map(|f| Function::Scalar(*f))
        })
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Token {
        self.tokens[self.pos.min(self.tokens.len() - 1)].clone()
    }

    fn peek_at(&self, offset: usize) -> &Tok {
        &self.tokens[(self.pos + offset).min(self.tokens.len() - 1)].tok
    }

    fn advance(&mut self) -> Token {
        let t = self.peek();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn is_keyword(&self, kw: &str) -> bool {
        matches!(self.peek_at(0), Tok::Ident(s) if s == kw)
    }

    fn unexpected(&self, expected: &str, found: Token) -> Diagnostic {
        Diagnostic::new(
            format!("expected {expected}, found {}", found.tok.describe()),
            found.span,
        )
    }

    fn expect(&mut self, tok: Tok, expected: &str) -> Result<Token, Diagnostic> {
        let t = self.peek();
        if t.tok == tok {
            Ok(self.advance())
        } else {
            Err(self.unexpected(expected, t))
        }
    }

    fn enter(&mut self, span: Span) -> Result<(), Diagnostic> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(Diagnostic::new(
                format!("expression nested too deeply (the limit is {MAX_NESTING} levels)"),
                span,
            ));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr, Diagnostic> {
        self.or()
    }

    fn or(&mut self) -> Result<Expr, Diagnostic> {
        let first = self.and()?;
        if !self.is_keyword("or") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.is_keyword("or") {
            self.advance();
            items.push(self.and()?);
        }
        let span = items[0].span.to(items[items.len() - 1].span);
        Ok(Expr::new(ExprKind::Or(items), span))
    }

    fn and(&mut self) -> Result<Expr, Diagnostic> {
        let first = self.unary()?;
        if !self.is_keyword("and") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.is_keyword("and") {
            self.advance();
            items.push(self.unary()?);
        }
        let span = items[0].span.to(items[items.len() - 1].span);
        Ok(Expr::new(ExprKind::And(items), span))
    }

    fn unary(&mut self) -> Result<Expr, Diagnostic> {
        if self.is_keyword("not") {
            let not = self.advance();
            self.enter(not.span)?;
            let operand = self.unary()?;
            self.depth -= 1;
            let span = not.span.to(operand.span);
            return Ok(Expr::new(ExprKind::Not(Box::new(operand)), span));
        }
        self.comparison()
    }

    fn comparison_op(&self) -> Option<CompareOp> {
        Some(match self.peek_at(0) {
            Tok::EqEq => CompareOp::Eq,
            Tok::Ne => CompareOp::Ne,
            Tok::Lt => CompareOp::Lt,
            Tok::Le => CompareOp::Le,
            Tok::Gt => CompareOp::Gt,
            Tok::Ge => CompareOp::Ge,
            Tok::Ident(s) if s == "contains" => CompareOp::Contains,
            Tok::Ident(s) if s == "starts_with" => CompareOp::StartsWith,
            _ => return None,
        })
    }

    fn comparison(&mut self) -> Result<Expr, Diagnostic> {
        let lhs = self.operand()?;
        let expr = if let Some(op) = self.comparison_op() {
            self.advance();
            let rhs = self.operand_after(&format!("after '{}'", op.symbol()))?;
            let span = lhs.span.to(rhs.span);
            Expr::new(
                ExprKind::Compare {
                    op,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                },
                span,
            )
        } else if self.is_keyword("in") {
            self.advance();
            self.in_list(lhs, false)?
        } else if self.is_keyword("not") && matches!(self.peek_at(1), Tok::Ident(s) if s == "in") {
            self.advance();
            self.advance();
            self.in_list(lhs, true)?
        } else if self.is_keyword("is") {
            self.advance();
            let negated = self.is_keyword("not");
            if negated {
                self.advance();
            }
            let t = self.peek();
            if !matches!(&t.tok, Tok::Ident(s) if s == "null") {
                let what = if negated {
                    "after 'is not'"
                } else {
                    "after 'is'"
                };
                return Err(self.unexpected(&format!("'null' {what}"), t));
            }
            self.advance();
            let span = lhs.span.to(t.span);
            Expr::new(
                ExprKind::IsNull {
                    negated,
                    expr: Box::new(lhs),
                },
                span,
            )
        } else if self.is_keyword("not") {
            self.advance();
            let t = self.peek();
            return Err(self.unexpected("'in' after 'not' (or 'and'/'or' to join a condition)", t));
        } else {
            return Ok(lhs);
        };
        if self.comparison_op().is_some() || self.is_keyword("in") || self.is_keyword("is") {
            let t = self.peek();
            return Err(Diagnostic::new(
                format!(
                    "comparisons cannot be chained: found {} after a comparison; join conditions with 'and' or 'or'",
                    t.tok.describe()
                ),
                t.span,
            ));
        }
        Ok(expr)
    }

    fn in_list(&mut self, lhs: Expr, negated: bool) -> Result<Expr, Diagnostic> {
        let kw = if negated { "'not in'" } else { "'in'" };
        self.expect(Tok::LBracket, &format!("'[' to start a list after {kw}"))?;
        let mut items = Vec::new();
        loop {
            if self.peek_at(0) == &Tok::RBracket {
                break;
            }
            let t = self.peek();
            let lit = match self.literal()? {
                Some(lit) => lit,
                None => return Err(self.unexpected("a literal value in the list", t)),
            };
            items.push(lit);
            if self.peek_at(0) == &Tok::Comma {
                self.advance();
            } else {
                break;
            }
        }
        let close = self.expect(Tok::RBracket, "',' or ']' in the list")?;
        let span = lhs.span.to(close.span);
        Ok(Expr::new(
            ExprKind::In {
                negated,
                lhs: Box::new(lhs),
                items,
            },
            span,
        ))
    }

    /// A literal, if the next tokens form one.
    fn literal(&mut self) -> Result<Option<Spanned<Literal>>, Diagnostic> {
        let t = self.peek();
        let lit = match &t.tok {
            Tok::Str(s) => Literal::String(s.clone()),
            Tok::Num(n) => Literal::Number(*n),
            Tok::Dur(d) => Literal::Duration(*d),
            Tok::Ident(s) if s == "true" => Literal::Bool(true),
            Tok::Ident(s) if s == "false" => Literal::Bool(false),
            Tok::Ident(s) if s == "null" => Literal::Null,
            Tok::Minus => {
                self.advance();
                let n = self.peek();
                return match n.tok {
                    Tok::Num(v) => {
                        self.advance();
                        Ok(Some(Spanned::new(Literal::Number(-v), t.span.to(n.span))))
                    }
                    Tok::Dur(_) => Err(Diagnostic::new(
                        "bad duration: durations cannot be negative; use ago(…) for a past instant",
                        t.span.to(n.span),
                    )),
                    _ => Err(self.unexpected("a number after '-'", n)),
                };
            }
            _ => return Ok(None),
        };
        self.advance();
        Ok(Some(Spanned::new(lit, t.span)))
    }

    fn operand_after(&mut self, context: &str) -> Result<Expr, Diagnostic> {
        let t = self.peek();
        if t.tok == Tok::Eof
            || matches!(&t.tok, Tok::Ident(s) if KEYWORDS.contains(&s.as_str()) && !matches!(s.as_str(), "true" | "false" | "null"))
        {
            return Err(self.unexpected(&format!("a value {context}"), t));
        }
        self.operand()
    }

    fn operand(&mut self) -> Result<Expr, Diagnostic> {
        if let Some(lit) = self.literal()? {
            return Ok(Expr::new(ExprKind::Literal(lit.node), lit.span));
        }
        let t = self.peek();
        match &t.tok {
            Tok::LParen => {
                self.advance();
                self.enter(t.span)?;
                let inner = self.expr()?;
                self.depth -= 1;
                let close = self.peek();
                if close.tok != Tok::RParen {
                    return Err(self.unexpected(
                        &format!("')' to close the '(' at {}:{}", t.span.line, t.span.column),
                        close,
                    ));
                }
                self.advance();
                Ok(Expr::new(inner.kind, t.span.to(close.span)))
            }
            Tok::LBracket => Err(Diagnostic::new(
                "a list is only allowed after 'in', e.g. traits.plan in [\"pro\", \"team\"]",
                t.span,
            )),
            Tok::Ident(name) if KEYWORDS.contains(&name.as_str()) => {
                Err(self.unexpected("an expression", t))
            }
            Tok::Ident(name) => {
                let name = name.clone();
                self.advance();
                if self.peek_at(0) == &Tok::LParen {
                    self.call(&name, t.span)
                } else {
                    self.path(&name, t.span)
                }
            }
            _ => Err(self.unexpected("an expression", t)),
        }
    }

    fn path(&mut self, root: &str, root_span: Span) -> Result<Expr, Diagnostic> {
        let mut segments = Vec::new();
        let mut span = root_span;
        while self.peek_at(0) == &Tok::Dot {
            self.advance();
            let t = self.peek();
            match &t.tok {
                Tok::Ident(s) | Tok::Str(s) => {
                    segments.push(s.clone());
                    span = span.to(t.span);
                    self.advance();
                }
                _ => return Err(self.unexpected("a field name after '.'", t)),
            }
        }
        let exactly_one = |what: &str, example: &str| {
            Diagnostic::new(
                format!("{what} are named by a single name, e.g. {example}"),
                span,
            )
        };
        let path = match root {
            "traits" if !segments.is_empty() => Path::Trait(segments),
            "traits" => {
                return Err(Diagnostic::new(
                    "expected a trait name after 'traits', e.g. traits.plan",
                    span,
                ));
            }
            "computed" if segments.len() == 1 => Path::Computed(segments.remove(0)),
            "computed" => return Err(exactly_one("computed traits", "computed.orders_30d")),
            "account" if segments.len() >= 2 && segments[0] == "traits" => {
                segments.remove(0);
                Path::AccountTrait(segments)
            }
            "account" => {
                return Err(Diagnostic::new(
                    "expected account.traits.<name>, e.g. account.traits.industry",
                    span,
                ));
            }
            "identifiers" if segments.len() == 1 => Path::Identifier(segments.remove(0)),
            "identifiers" => return Err(exactly_one("identifier types", "identifiers.email")),
            "consent" if segments.len() == 1 => Path::Consent(segments.remove(0)),
            "consent" => return Err(exactly_one("consent purposes", "consent.marketing")),
            "event" | "type" if !segments.is_empty() => {
                return Err(Diagnostic::new(
                    format!("'{root}' has no fields; event properties are properties.<name>"),
                    span,
                ));
            }
            "event" => Path::EventName,
            "type" => Path::EventType,
            "properties" if !segments.is_empty() => Path::Property(segments),
            "properties" => {
                return Err(Diagnostic::new(
                    "expected a property name after 'properties', e.g. properties.revenue",
                    span,
                ));
            }
            _ if lookup_function(root).is_some() => {
                return Err(Diagnostic::new(
                    format!("expected '(' after function name '{root}'"),
                    span,
                ));
            }
            _ => {
                return Err(Diagnostic::new(
                    format!(
                        "unknown field '{root}': fields are traits.…, computed.…, account.traits.…, identifiers.…, consent.…, and inside event filters event, type and properties.…"
                    ),
                    root_span,
                ));
            }
        };
        Ok(Expr::new(ExprKind::Path(path), span))
    }

    fn call(&mut self, name: &str, name_span: Span) -> Result<Expr, Diagnostic> {
        let Some(function) = lookup_function(name) else {
            let known: Vec<&str> = AggregateKind::ALL
                .iter()
                .map(|k| k.name())
                .chain(ScalarFunction::ALL.iter().map(|f| f.name()))
                .collect();
            return Err(Diagnostic::new(
                format!("unknown function '{name}' (known: {})", known.join(", ")),
                name_span,
            ));
        };
        let open = self.advance();
        self.enter(open.span)?;
        let mut args = Vec::new();
        let mut window = None;
        if self.peek_at(0) != &Tok::RParen {
            loop {
                if self.is_keyword("within") {
                    let kw = self.advance();
                    let t = self.peek();
                    let Tok::Dur(d) = t.tok else {
                        return Err(
                            self.unexpected("a duration after 'within', e.g. within 30d", t)
                        );
                    };
                    self.advance();
                    if d.amount == 0 {
                        return Err(Diagnostic::new(
                            "bad duration: a window must be longer than zero",
                            t.span,
                        ));
                    }
                    window = Some(Spanned::new(d, kw.span.to(t.span)));
                    break;
                }
                args.push(self.expr()?);
                if self.peek_at(0) == &Tok::Comma {
                    self.advance();
                } else {
                    break;
                }
            }
        }
        let t = self.peek();
        if t.tok != Tok::RParen {
            let what = if window.is_some() {
                format!("')' after the window of {name}()")
            } else {
                format!("')' after arguments of {name}()")
            };
            return Err(self.unexpected(&what, t));
        }
        let close = self.advance();
        self.depth -= 1;
        let span = name_span.to(close.span);

        match function {
            Function::Scalar(f) => {
                if let Some(w) = window {
                    return Err(Diagnostic::new(
                        format!("{name}() does not take a window"),
                        w.span,
                    ));
                }
                if args.len() != 1 {
                    return Err(arity(name, f.usage(), args.len(), span));
                }
                Ok(Expr::new(ExprKind::Call { function: f, args }, span))
            }
            Function::Aggregate(kind) => {
                let usage = if kind.takes_property() {
                    format!("{name}(properties.<name>, <event filter>[, within <duration>])")
                } else {
                    format!("{name}(<event filter>[, within <duration>])")
                };
                let wanted = if kind.takes_property() { 2 } else { 1 };
                if args.len() != wanted {
                    return Err(arity(name, &usage, args.len(), span));
                }
                let mut args = args.into_iter();
                let property = if kind.takes_property() {
                    let arg = args.next().expect("arity checked");
                    match arg.kind {
                        ExprKind::Path(p) => Some(Spanned::new(p, arg.span)),
                        _ => {
                            return Err(Diagnostic::new(
                                format!(
                                    "expected an event property such as properties.revenue as the first argument of {name}(), found {arg}"
                                ),
                                arg.span,
                            ));
                        }
                    }
                } else {
                    None
                };
                let filter = args.next().expect("arity checked");
                // `exists(traits.x)` is a presence test on a profile field.
                if kind == AggregateKind::Exists
                    && window.is_none()
                    && matches!(&filter.kind, ExprKind::Path(p) if !p.is_event_field())
                {
                    return Ok(Expr::new(
                        ExprKind::IsNull {
                            negated: true,
                            expr: Box::new(filter),
                        },
                        span,
                    ));
                }
                Ok(Expr::new(
                    ExprKind::Aggregate(AggregateCall {
                        kind,
                        property,
                        filter: Box::new(filter),
                        window,
                    }),
                    span,
                ))
            }
        }
    }
}

fn arity(name: &str, usage: &str, found: usize, span: Span) -> Diagnostic {
    let plural = if found == 1 { "" } else { "s" };
    Diagnostic::new(
        format!(
            "wrong number of arguments to {name}(): expected {usage}, found {found} argument{plural}"
        ),
        span,
    )
}
