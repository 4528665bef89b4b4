//! Tokenizer and recursive-descent parser. Recursion only happens at `(` and `!`,
//! both bounded by [`Limits::max_depth`], and terms are counted as they are built,
//! so no input can exhaust the stack or allocate a large tree.

use crate::{
    CmpOp, Expr, FieldPath, FilterError, Limits, Literal, MatchKind, Schema, is_keyword, time,
};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Not,
    And,
    Or,
    Op(CmpOp),
}

fn describe(t: Option<&Tok>) -> String {
    let punct = match t {
        None => return "end of filter".into(),
        Some(Tok::Ident(s)) => return format!("'{s}'"),
        Some(Tok::Str(s)) => return format!("string {}", crate::quote(s)),
        Some(Tok::Int(i)) => return format!("number {i}"),
        Some(Tok::Float(f)) => return format!("number {f:?}"),
        Some(Tok::Op(op)) => op.as_str(),
        Some(Tok::LParen) => "(",
        Some(Tok::RParen) => ")",
        Some(Tok::LBracket) => "[",
        Some(Tok::RBracket) => "]",
        Some(Tok::Comma) => ",",
        Some(Tok::Dot) => ".",
        Some(Tok::Not) => "!",
        Some(Tok::And) => "&&",
        Some(Tok::Or) => "||",
    };
    format!("'{punct}'")
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn tokenize(src: &str) -> Result<Vec<(Tok, usize)>, FilterError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let start = i;
        let rest = &b[i..];
        let (tok, len) = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b'[' => (Tok::LBracket, 1),
            b']' => (Tok::RBracket, 1),
            b',' => (Tok::Comma, 1),
            b'.' if !b.get(i + 1).is_some_and(u8::is_ascii_digit) => (Tok::Dot, 1),
            _ if rest.starts_with(b"&&") => (Tok::And, 2),
            _ if rest.starts_with(b"||") => (Tok::Or, 2),
            _ if rest.starts_with(b"==") => (Tok::Op(CmpOp::Eq), 2),
            _ if rest.starts_with(b"!=") => (Tok::Op(CmpOp::Ne), 2),
            _ if rest.starts_with(b"<=") => (Tok::Op(CmpOp::Le), 2),
            _ if rest.starts_with(b">=") => (Tok::Op(CmpOp::Ge), 2),
            b'<' => (Tok::Op(CmpOp::Lt), 1),
            b'>' => (Tok::Op(CmpOp::Gt), 1),
            b'!' => (Tok::Not, 1),
            b'=' => return Err(FilterError::new(i, "use '==' to compare, not '='")),
            b'&' => return Err(FilterError::new(i, "use '&&' for \"and\", not '&'")),
            b'|' => return Err(FilterError::new(i, "use '||' for \"or\", not '|'")),
            b'"' | b'\'' => {
                let (s, end) = string(src, i)?;
                (Tok::Str(s), end - i)
            }
            b'0'..=b'9' | b'-' | b'.' => {
                let (t, end) = number(src, i)?;
                (t, end - i)
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let n = rest.iter().take_while(|&&b| is_ident_byte(b)).count();
                (Tok::Ident(src[i..i + n].to_string()), n)
            }
            _ => {
                let ch = src.get(i..).and_then(|s| s.chars().next()).unwrap_or('?');
                return Err(FilterError::new(
                    i,
                    format!("unexpected character {}", crate::quote(&ch.to_string())),
                ));
            }
        };
        out.push((tok, start));
        i += len;
    }
    Ok(out)
}

/// A quoted string starting at `start`; returns its value and the offset after it.
fn string(src: &str, start: usize) -> Result<(String, usize), FilterError> {
    let body = src.get(start..).unwrap_or("");
    let mut chars = body.char_indices();
    let quote = chars.next().map_or('"', |(_, q)| q);
    let mut out = String::new();
    while let Some((off, c)) = chars.next() {
        let pos = start + off;
        match c {
            c if c == quote => return Ok((out, pos + 1)),
            '\\' => match chars.next().map(|(_, e)| e) {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                Some('\'') => out.push('\''),
                Some('u') => {
                    let hex: String = chars.by_ref().take(4).map(|(_, h)| h).collect();
                    let ch = (hex.len() == 4 && hex.chars().all(|h| h.is_ascii_hexdigit()))
                        .then(|| u32::from_str_radix(&hex, 16).ok())
                        .flatten()
                        .and_then(char::from_u32);
                    match ch {
                        Some(ch) => out.push(ch),
                        None => {
                            return Err(FilterError::new(
                                pos,
                                "invalid \\u escape: expected 4 hex digits naming a \
                                 character (not a surrogate)",
                            ));
                        }
                    }
                }
                None => break,
                Some(other) => {
                    return Err(FilterError::new(
                        pos,
                        format!(
                            "unknown escape '\\{other}' in string (use \\\" \\' \\\\ \\n \\t \
                             or \\uXXXX)"
                        ),
                    ));
                }
            },
            c => out.push(c),
        }
    }
    Err(FilterError::new(
        start,
        format!("unterminated string: missing the closing {quote}"),
    ))
}

/// A number starting at `start` (an optional `-` followed by digits, `.`, exponent).
fn number(src: &str, start: usize) -> Result<(Tok, usize), FilterError> {
    let b = src.as_bytes();
    let mut i = start;
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    if !b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'.') {
        return Err(FilterError::new(start, "expected a number after '-'"));
    }
    while let Some(&c) = b.get(i) {
        let exponent_sign = matches!(c, b'-' | b'+') && matches!(b[i - 1], b'e' | b'E');
        if c.is_ascii_digit() || c == b'.' || is_ident_byte(c) || exponent_sign {
            i += 1;
        } else {
            break;
        }
    }
    // Only ASCII was consumed, so `i` is on a char boundary.
    let text = &src[start..i];
    let is_float = text.contains(['.', 'e', 'E']);
    let tok = if is_float {
        let valid = text
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'-' | b'+'));
        valid
            .then(|| text.parse::<f64>().ok())
            .flatten()
            .filter(|f| f.is_finite())
            .map(Tok::Float)
    } else {
        text.parse::<i64>().ok().map(Tok::Int)
    };
    match tok {
        Some(t) => Ok((t, i)),
        None if !is_float && text.bytes().skip(1).all(|c| c.is_ascii_digit()) => Err(
            FilterError::new(start, format!("integer {text} is out of range")),
        ),
        None => Err(FilterError::new(start, format!("invalid number '{text}'"))),
    }
}

/// Where a predicate's parts are in the source, so schema errors can point at them.
/// Recorded in source order, which is also the left-to-right order of leaves in the
/// tree.
#[derive(Debug, Clone, Default)]
pub(crate) struct LeafSpan {
    pub field: usize,
    pub op: usize,
    pub values: Vec<usize>,
}

struct Parser<'a> {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    len: usize,
    limits: &'a Limits,
    nodes: usize,
    spans: Vec<LeafSpan>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.peek_at(0)
    }

    fn peek_at(&self, n: usize) -> Option<&Tok> {
        self.toks.get(self.pos + n).map(|(t, _)| t)
    }

    fn peek_ident(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(w)) if w == word)
    }

    /// Byte offset of the next token (the end of input if there is none).
    fn here(&self) -> usize {
        self.toks.get(self.pos).map_or(self.len, |(_, p)| *p)
    }

    /// Describes the token before the next one, for "after X" in messages.
    fn after_prev(&self) -> String {
        match self.pos.checked_sub(1).and_then(|p| self.toks.get(p)) {
            Some((t, _)) => format!(" after {}", describe(Some(t))),
            None => String::new(),
        }
    }

    fn bump(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(t, _)| t.clone());
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn err<T>(&self, msg: impl Into<String>) -> Result<T, FilterError> {
        Err(FilterError::new(self.here(), msg))
    }

    fn found(&self) -> String {
        describe(self.peek())
    }

    fn expect(&mut self, want: &Tok, what: &str) -> Result<(), FilterError> {
        if self.peek() == Some(want) {
            self.pos += 1;
            Ok(())
        } else {
            self.err(format!("expected {what}, found {}", self.found()))
        }
    }

    /// Counts one term (a predicate or boolean operator) starting at `at`.
    fn count(&mut self, at: usize) -> Result<(), FilterError> {
        self.nodes += 1;
        if self.nodes > self.limits.max_nodes {
            Err(FilterError::new(
                at,
                format!(
                    "filter is too complex: more than {} terms",
                    self.limits.max_nodes
                ),
            ))
        } else {
            Ok(())
        }
    }

    /// One more level of nesting, opened by the `(` or `!` at `at`.
    fn deeper(&self, depth: usize, at: usize) -> Result<usize, FilterError> {
        if depth >= self.limits.max_depth {
            Err(FilterError::new(
                at,
                format!("filter nests deeper than {} levels", self.limits.max_depth),
            ))
        } else {
            Ok(depth + 1)
        }
    }

    fn or(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let mut left = self.and(depth)?;
        while self.peek() == Some(&Tok::Or) {
            self.count(self.here())?;
            self.pos += 1;
            let right = self.and(depth)?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let mut left = self.unary(depth)?;
        while self.peek() == Some(&Tok::And) {
            self.count(self.here())?;
            self.pos += 1;
            let right = self.unary(depth)?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, FilterError> {
        if self.peek() == Some(&Tok::Not) {
            let at = self.here();
            let d = self.deeper(depth, at)?;
            self.count(at)?;
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary(d)?)));
        }
        self.primary(depth)
    }

    fn primary(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let at = self.here();
        match (self.peek(), self.peek_at(1)) {
            (Some(Tok::LParen), _) => {
                let d = self.deeper(depth, at)?;
                self.pos += 1;
                let e = self.or(d)?;
                if self.peek() == Some(&Tok::RParen) {
                    self.pos += 1;
                    Ok(e)
                } else {
                    self.err(format!(
                        "expected ')' to close the '(' at position {at}, found {}",
                        self.found()
                    ))
                }
            }
            (Some(Tok::Ident(id)), Some(Tok::LParen)) if id == "has" => {
                self.pos += 2;
                let field_at = self.here();
                let path = self.path()?;
                self.expect(&Tok::RParen, "')' after has(field")?;
                self.count(at)?;
                self.spans.push(LeafSpan {
                    field: field_at,
                    op: at,
                    values: Vec::new(),
                });
                Ok(Expr::Has(path))
            }
            (Some(Tok::Ident(id)), Some(Tok::LParen)) if id != "timestamp" => self.err(format!(
                "unknown function '{id}' (supported: has(field), timestamp(\"...\"), \
                 and field.startsWith/endsWith/contains(\"...\"))"
            )),
            (Some(Tok::Str(_) | Tok::Int(_) | Tok::Float(_)), _) => self.literal_in(),
            (Some(Tok::Ident(id)), _)
                if matches!(id.as_str(), "true" | "false" | "null" | "timestamp") =>
            {
                self.literal_in()
            }
            (Some(Tok::Ident(_)), _) => self.predicate(),
            _ => self.err(format!(
                "expected a condition such as field == value{}, found {}",
                self.after_prev(),
                self.found()
            )),
        }
    }

    /// `"vip" in tags`
    fn literal_in(&mut self) -> Result<Expr, FilterError> {
        let at = self.here();
        let value = self.literal("")?;
        if !self.peek_ident("in") {
            return self.err(format!(
                "expected 'in <list field>' after the literal at position {at}, found {} \
                 (comparisons put the field first: field == value)",
                self.found()
            ));
        }
        let op = self.here();
        self.pos += 1;
        let field_at = self.here();
        let field = self.path()?;
        self.count(at)?;
        self.spans.push(LeafSpan {
            field: field_at,
            op,
            values: vec![at],
        });
        Ok(Expr::Contains { field, value })
    }

    fn path(&mut self) -> Result<FieldPath, FilterError> {
        let mut segs = match self.peek() {
            Some(Tok::Ident(id)) if !is_keyword(id) => vec![id.clone()],
            Some(Tok::Ident(id)) => {
                return self.err(format!("expected a field name, found the keyword '{id}'"));
            }
            _ => return self.err(format!("expected a field name, found {}", self.found())),
        };
        self.pos += 1;
        loop {
            match (self.peek(), self.peek_at(1), self.peek_at(2)) {
                (Some(Tok::Dot), Some(Tok::Ident(m)), Some(Tok::LParen)) => {
                    if method(m).is_some() {
                        break;
                    }
                    let m = m.clone();
                    self.pos += 1;
                    return self.err(format!(
                        "unknown method '{m}' (supported: startsWith, endsWith, contains)"
                    ));
                }
                (Some(Tok::Dot), Some(Tok::Ident(id)), _) => {
                    segs.push(id.clone());
                    self.pos += 2;
                }
                (Some(Tok::Dot), _, _) => {
                    self.pos += 1;
                    return self.err(format!(
                        "expected a field name after '.', found {}",
                        self.found()
                    ));
                }
                (Some(Tok::LBracket), Some(Tok::Str(key)), Some(Tok::RBracket)) => {
                    segs.push(key.clone());
                    self.pos += 3;
                }
                (Some(Tok::LBracket), Some(Tok::Str(_)), _) => {
                    self.pos += 2;
                    return self.err(format!(
                        "expected ']' after the key, found {}",
                        self.found()
                    ));
                }
                (Some(Tok::LBracket), _, _) => {
                    self.pos += 1;
                    return self.err(format!(
                        "expected a quoted key like [\"key\"], found {}",
                        self.found()
                    ));
                }
                _ => break,
            }
        }
        Ok(FieldPath(segs))
    }

    /// A literal; `ctx` (e.g. " after '>'") makes the error say where one was due.
    fn literal(&mut self, ctx: &str) -> Result<Literal, FilterError> {
        let lit = match self.peek() {
            Some(Tok::Str(s)) => Literal::String(s.clone()),
            Some(Tok::Int(i)) => Literal::Int(*i),
            Some(Tok::Float(f)) => Literal::Float(*f),
            Some(Tok::Ident(i)) if i == "true" => Literal::Bool(true),
            Some(Tok::Ident(i)) if i == "false" => Literal::Bool(false),
            Some(Tok::Ident(i)) if i == "null" => Literal::Null,
            Some(Tok::Ident(i)) if i == "timestamp" => {
                self.pos += 1;
                return self.timestamp();
            }
            Some(Tok::Ident(i)) => {
                let hint = if is_keyword(i) {
                    ""
                } else {
                    " (a string needs quotes; comparing two fields is not supported)"
                };
                return self.err(format!("expected a literal{ctx}, found '{i}'{hint}"));
            }
            other => {
                return self.err(format!(
                    "expected a literal{ctx}, found {}",
                    describe(other)
                ));
            }
        };
        self.pos += 1;
        Ok(lit)
    }

    /// The rest of `timestamp("...")`, after the keyword.
    fn timestamp(&mut self) -> Result<Literal, FilterError> {
        self.expect(&Tok::LParen, "'(' after timestamp")?;
        let at = self.here();
        let Some(Tok::Str(s)) = self.peek().cloned() else {
            return self.err(format!(
                "timestamp() takes a quoted RFC 3339 time like \"2024-01-01T00:00:00Z\", \
                 found {}",
                self.found()
            ));
        };
        self.pos += 1;
        self.expect(&Tok::RParen, "')' after the timestamp")?;
        let (seconds, nanos) = time::parse_rfc3339(&s).map_err(|why| {
            FilterError::new(at, format!("invalid timestamp {}: {why}", crate::quote(&s)))
        })?;
        Ok(Literal::Timestamp { seconds, nanos })
    }

    fn predicate(&mut self) -> Result<Expr, FilterError> {
        let field_at = self.here();
        let field = self.path()?;
        let op_at = self.here();
        let mut span = LeafSpan {
            field: field_at,
            op: op_at,
            values: Vec::new(),
        };
        let expr = match self.peek().cloned() {
            Some(Tok::Op(op)) => {
                self.pos += 1;
                span.values.push(self.here());
                let value = self.literal(&format!(" after '{}'", op.as_str()))?;
                Expr::Compare { field, op, value }
            }
            Some(Tok::Ident(i)) if i == "in" => {
                self.pos += 1;
                let open = self.here();
                if self.peek() != Some(&Tok::LBracket) {
                    return self.err(format!(
                        "expected '[' after 'in' (a list of values like [\"a\", \"b\"]), \
                         found {}",
                        self.found()
                    ));
                }
                self.pos += 1;
                let mut values = Vec::new();
                loop {
                    span.values.push(self.here());
                    let ctx = if values.is_empty() {
                        " in the list (it needs at least one value)"
                    } else {
                        " in the list"
                    };
                    values.push(self.literal(ctx)?);
                    match self.peek() {
                        Some(Tok::Comma) if self.peek_at(1) == Some(&Tok::RBracket) => {
                            self.pos += 2;
                            break;
                        }
                        Some(Tok::Comma) => self.pos += 1,
                        Some(Tok::RBracket) => {
                            self.pos += 1;
                            break;
                        }
                        _ => {
                            return self.err(format!(
                                "expected ',' or ']' to close the list opened at position \
                                 {open}, found {}",
                                self.found()
                            ));
                        }
                    }
                }
                Expr::In { field, values }
            }
            Some(Tok::Dot) => {
                // `path` stops at `.` only before a known method followed by `(`.
                self.pos += 1;
                span.op = self.here();
                let kind = match self.bump() {
                    Some(Tok::Ident(m)) => method(&m),
                    _ => None,
                };
                let Some(kind) = kind else {
                    return self.err("expected startsWith, endsWith or contains");
                };
                self.expect(&Tok::LParen, "'('")?;
                span.values.push(self.here());
                let Some(Tok::Str(pattern)) = self.peek().cloned() else {
                    return self.err(format!(
                        "{}() takes a quoted string, found {}",
                        kind.as_str(),
                        self.found()
                    ));
                };
                self.pos += 1;
                self.expect(&Tok::RParen, "')'")?;
                Expr::StringMatch {
                    field,
                    kind,
                    pattern,
                }
            }
            // A bare field is a boolean test.
            _ => {
                span.op = field_at;
                span.values.push(field_at);
                Expr::Compare {
                    field,
                    op: CmpOp::Eq,
                    value: Literal::Bool(true),
                }
            }
        };
        self.count(field_at)?;
        self.spans.push(span);
        Ok(expr)
    }
}

fn method(m: &str) -> Option<MatchKind> {
    match m {
        "startsWith" => Some(MatchKind::StartsWith),
        "endsWith" => Some(MatchKind::EndsWith),
        "contains" => Some(MatchKind::Contains),
        _ => None,
    }
}

pub(crate) fn parse_spanned(
    src: &str,
    limits: &Limits,
) -> Result<(Expr, Vec<LeafSpan>), FilterError> {
    if src.len() > limits.max_len {
        return Err(FilterError::new(
            limits.max_len,
            format!("filter is longer than {} bytes", limits.max_len),
        ));
    }
    if src.trim().is_empty() {
        return Err(FilterError::new(0, "filter is empty"));
    }
    let mut p = Parser {
        toks: tokenize(src)?,
        pos: 0,
        len: src.len(),
        limits,
        nodes: 0,
        spans: Vec::new(),
    };
    let expr = p.or(0)?;
    match p.peek() {
        None => Ok((expr, p.spans)),
        Some(Tok::RParen) => p.err("unmatched ')'"),
        Some(Tok::Ident(w)) if matches!(w.as_str(), "AND" | "OR" | "and" | "or") => p.err(format!(
            "unexpected '{w}': combine conditions with && and ||"
        )),
        Some(
            Tok::Ident(_) | Tok::Str(_) | Tok::Int(_) | Tok::Float(_) | Tok::Not | Tok::LParen,
        ) => p.err(format!(
            "unexpected {} after a complete condition (combine conditions with && or ||)",
            p.found()
        )),
        Some(_) => p.err(format!(
            "unexpected {} after a complete condition",
            p.found()
        )),
    }
}

/// Parses with the default [`Limits`]. An empty filter is an error here because a
/// stored segment definition must say something; request filters use
/// [`parse_optional`].
pub fn parse(src: &str) -> Result<Expr, FilterError> {
    parse_with_limits(src, &Limits::default())
}

/// For callers (internal jobs, tests) that need bounds other than the defaults.
pub fn parse_with_limits(src: &str, limits: &Limits) -> Result<Expr, FilterError> {
    parse_spanned(src, limits).map(|(e, _)| e)
}

/// For request `filter` fields, where AIP-160 says an empty filter means "everything".
pub fn parse_optional(src: &str) -> Result<Option<Expr>, FilterError> {
    if src.trim().is_empty() {
        Ok(None)
    } else {
        parse(src).map(Some)
    }
}

/// [`parse_optional`] plus [`Expr::check`], with schema errors pointing at the
/// offending field, operator or literal (an `Expr` alone has no positions).
pub fn parse_and_check(src: &str, schema: &Schema) -> Result<Option<Expr>, FilterError> {
    if src.trim().is_empty() {
        return Ok(None);
    }
    let (expr, spans) = parse_spanned(src, &Limits::default())?;
    schema.check(&expr, &spans)?;
    Ok(Some(expr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Expr as E, FieldPath as P, Literal as L};

    fn f(s: &str) -> P {
        P(s.split('.').map(String::from).collect())
    }

    fn b(e: E) -> Box<E> {
        Box::new(e)
    }

    fn truthy(n: &str) -> E {
        E::Compare {
            field: f(n),
            op: CmpOp::Eq,
            value: L::Bool(true),
        }
    }

    #[test]
    fn each_construct_parses() {
        let s = |v: &str| L::String(v.into());
        for (src, want) in [
            (
                "churn_probability > 0.7 && value_tier in [\"platinum\",\"gold\"]",
                E::And(
                    b(E::Compare {
                        field: f("churn_probability"),
                        op: CmpOp::Gt,
                        value: L::Float(0.7),
                    }),
                    b(E::In {
                        field: f("value_tier"),
                        values: vec![s("platinum"), s("gold")],
                    }),
                ),
            ),
            (
                "\"vip\" in tags",
                E::Contains {
                    field: f("tags"),
                    value: s("vip"),
                },
            ),
            (
                "attributes.tier == \"gold\"",
                E::Compare {
                    field: f("attributes.tier"),
                    op: CmpOp::Eq,
                    value: s("gold"),
                },
            ),
            (
                "attributes[\"plan-x\"] != 'free'",
                E::Compare {
                    field: P(vec!["attributes".into(), "plan-x".into()]),
                    op: CmpOp::Ne,
                    value: s("free"),
                },
            ),
            (
                "!(kind == \"BUSINESS\") || region.startsWith(\"EU\")",
                E::Or(
                    b(E::Not(b(E::Compare {
                        field: f("kind"),
                        op: CmpOp::Eq,
                        value: s("BUSINESS"),
                    }))),
                    b(E::StringMatch {
                        field: f("region"),
                        kind: MatchKind::StartsWith,
                        pattern: "EU".into(),
                    }),
                ),
            ),
            (
                "name.endsWith('son') && name.contains(\"a\")",
                E::And(
                    b(E::StringMatch {
                        field: f("name"),
                        kind: MatchKind::EndsWith,
                        pattern: "son".into(),
                    }),
                    b(E::StringMatch {
                        field: f("name"),
                        kind: MatchKind::Contains,
                        pattern: "a".into(),
                    }),
                ),
            ),
            (
                "has(firmographics.credit_rating)",
                E::Has(f("firmographics.credit_rating")),
            ),
            (
                "create_time >= timestamp(\"2024-01-01T00:00:00Z\")",
                E::Compare {
                    field: f("create_time"),
                    op: CmpOp::Ge,
                    value: L::Timestamp {
                        seconds: 1_704_067_200,
                        nanos: 0,
                    },
                },
            ),
            ("erased", truthy("erased")),
            (
                "n <= -3 || n < 1e3 || n > -0.25 || n != null",
                E::Or(
                    b(E::Or(
                        b(E::Or(
                            b(E::Compare {
                                field: f("n"),
                                op: CmpOp::Le,
                                value: L::Int(-3),
                            }),
                            b(E::Compare {
                                field: f("n"),
                                op: CmpOp::Lt,
                                value: L::Float(1000.0),
                            }),
                        )),
                        b(E::Compare {
                            field: f("n"),
                            op: CmpOp::Gt,
                            value: L::Float(-0.25),
                        }),
                    )),
                    b(E::Compare {
                        field: f("n"),
                        op: CmpOp::Ne,
                        value: L::Null,
                    }),
                ),
            ),
            (
                "x in [1, 2.5, true, null, 'a',]",
                E::In {
                    field: f("x"),
                    values: vec![L::Int(1), L::Float(2.5), L::Bool(true), L::Null, s("a")],
                },
            ),
            (
                r#"s == "q\"\'\\\n\t\u00e9\u4e2d" && s != 'it\'s "x"'"#,
                E::And(
                    b(E::Compare {
                        field: f("s"),
                        op: CmpOp::Eq,
                        value: s("q\"'\\\n\té中"),
                    }),
                    b(E::Compare {
                        field: f("s"),
                        op: CmpOp::Ne,
                        value: s("it's \"x\""),
                    }),
                ),
            ),
            (" \t\n( a ) \r\n", truthy("a")),
            (
                "i == -9223372036854775808 || i == 9223372036854775807",
                E::Or(
                    b(E::Compare {
                        field: f("i"),
                        op: CmpOp::Eq,
                        value: L::Int(i64::MIN),
                    }),
                    b(E::Compare {
                        field: f("i"),
                        op: CmpOp::Eq,
                        value: L::Int(i64::MAX),
                    }),
                ),
            ),
            (
                "timestamp('2024-01-01T01:00:00.25+01:00') in stamps",
                E::Contains {
                    field: f("stamps"),
                    value: L::Timestamp {
                        seconds: 1_704_067_200,
                        nanos: 250_000_000,
                    },
                },
            ),
            (
                "attributes.in == 'x'",
                E::Compare {
                    field: f("attributes.in"),
                    op: CmpOp::Eq,
                    value: s("x"),
                },
            ),
        ] {
            assert_eq!(parse(src), Ok(want), "{src}");
        }
    }

    #[test]
    fn precedence() {
        let (a, bb, c) = (truthy("a"), truthy("b"), truthy("c"));
        // && binds tighter than ||, ! tighter than &&.
        assert_eq!(
            parse("a || b && !c").unwrap(),
            E::Or(
                b(a.clone()),
                b(E::And(b(bb.clone()), b(E::Not(b(c.clone())))))
            )
        );
        assert_eq!(
            parse("a && b || c").unwrap(),
            E::Or(b(E::And(b(a.clone()), b(bb.clone()))), b(c.clone()))
        );
        assert_eq!(
            parse("!a && b").unwrap(),
            E::And(b(E::Not(b(a.clone()))), b(bb.clone()))
        );
        assert_eq!(
            parse("a && (b || c)").unwrap(),
            E::And(b(a.clone()), b(E::Or(b(bb.clone()), b(c.clone()))))
        );
        // `!` applies to the whole predicate, not to the field.
        assert_eq!(
            parse("!kind == 'B'").unwrap(),
            parse("!(kind == 'B')").unwrap()
        );
        assert_eq!(parse("!!a").unwrap(), E::Not(b(E::Not(b(a.clone())))));
        // Chains associate to the left.
        assert_eq!(
            parse("a || b || c").unwrap(),
            E::Or(b(E::Or(b(a), b(bb))), b(c))
        );
    }

    #[test]
    fn errors_say_what_and_where() {
        let cases = [
            (
                "kind ==",
                "expected a literal after '==', found end of filter",
                7,
            ),
            ("kind > )", "expected a literal after '>', found ')'", 7),
            ("kind == BUSINESS", "a string needs quotes", 8),
            (
                "name == \"abc",
                "unterminated string: missing the closing \"",
                8,
            ),
            (
                "name == 'abc",
                "unterminated string: missing the closing '",
                8,
            ),
            ("name == \"ab\\", "unterminated string", 8),
            ("s == \"a\\qb\"", "unknown escape '\\q'", 7),
            ("s == \"\\u12\"", "invalid \\u escape", 6),
            ("s == \"\\ud800\"", "invalid \\u escape", 6),
            (
                "(a == 1",
                "expected ')' to close the '(' at position 0, found end of filter",
                7,
            ),
            (
                "((a == 1) || b",
                "expected ')' to close the '(' at position 0",
                14,
            ),
            ("a == 1)", "unmatched ')'", 6),
            (
                "a == 1 b",
                "unexpected 'b' after a complete condition (combine",
                7,
            ),
            ("a == 1 AND b == 2", "combine conditions with && and ||", 7),
            ("a == 1 ]", "unexpected ']' after a complete condition", 7),
            (
                "t > timestamp(\"yesterday\")",
                "invalid timestamp \"yesterday\": expected the form",
                14,
            ),
            (
                "t > timestamp('2023-02-29T00:00:00Z')",
                "day 29 does not exist in 2023-02",
                14,
            ),
            (
                "t > timestamp(5)",
                "timestamp() takes a quoted RFC 3339 time",
                14,
            ),
            ("t > timestamp", "expected '(' after timestamp", 13),
            (
                "a == 1 &&",
                "expected a condition such as field == value after '&&', found end of filter",
                9,
            ),
            (
                "|| a",
                "expected a condition such as field == value, found '||'",
                0,
            ),
            (
                "&& a",
                "expected a condition such as field == value, found '&&'",
                0,
            ),
            (
                "a == 1 || ()",
                "expected a condition such as field == value after '(', found ')'",
                11,
            ),
            ("!", "after '!', found end of filter", 1),
            ("a # 1", "unexpected character \"#\"", 2),
            ("a = 1", "use '==' to compare", 2),
            ("a == 1 & b", "use '&&'", 7),
            ("a == 1 | b", "use '||'", 7),
            ("a == 1 ∧ b", "unexpected character \"∧\"", 7),
            ("", "filter is empty", 0),
            (" \n", "filter is empty", 0),
            (
                "n == 99999999999999999999",
                "integer 99999999999999999999 is out of range",
                5,
            ),
            ("n == 1e999", "invalid number '1e999'", 5),
            ("n == 5abc", "invalid number '5abc'", 5),
            ("n == 1.2.3", "invalid number '1.2.3'", 5),
            ("n == 0x1F", "invalid number '0x1F'", 5),
            ("n == -", "expected a number after '-'", 5),
            ("n == -x", "expected a number after '-'", 5),
            ("x in tags", "expected '[' after 'in'", 5),
            (
                "x in []",
                "expected a literal in the list (it needs at least one value), found ']'",
                6,
            ),
            (
                "x in [1 2]",
                "expected ',' or ']' to close the list opened at position 5",
                8,
            ),
            (
                "x in [1,",
                "expected a literal in the list, found end of filter",
                8,
            ),
            (
                "'vip' == tags",
                "expected 'in <list field>' after the literal at position 0",
                6,
            ),
            ("true", "expected 'in <list field>'", 4),
            (
                "'vip' in 'tags'",
                "expected a field name, found string \"tags\"",
                9,
            ),
            ("size(tags) > 1", "unknown function 'size'", 0),
            ("region.matches('x')", "unknown method 'matches'", 7),
            (
                "region.startsWith(1)",
                "startsWith() takes a quoted string, found number 1",
                18,
            ),
            (
                "region.startsWith('a'",
                "expected ')', found end of filter",
                21,
            ),
            ("a. == 1", "expected a field name after '.', found '=='", 3),
            (
                "a[1] == 1",
                "expected a quoted key like [\"key\"], found number 1",
                2,
            ),
            ("a['k' == 1", "expected ']' after the key, found '=='", 6),
            (
                "has(in)",
                "expected a field name, found the keyword 'in'",
                4,
            ),
            (
                "has(a",
                "expected ')' after has(field, found end of filter",
                5,
            ),
            (
                "in == 1",
                "expected a field name, found the keyword 'in'",
                0,
            ),
            ("a == b", "comparing two fields is not supported", 5),
        ];
        for (src, msg, pos) in cases {
            let e = parse(src).unwrap_err();
            assert!(e.message.contains(msg), "{src}: {e}");
            assert_eq!(e.position, pos, "{src}: {e}");
            assert_eq!(e.to_string(), format!("at position {pos}: {}", e.message));
        }
    }

    #[test]
    fn limits_bound_length_depth_and_terms() {
        let long = format!("a == '{}'", "x".repeat(4090));
        assert_eq!(long.len(), 4097);
        let e = parse(&long).unwrap_err();
        assert_eq!(e.message, "filter is longer than 4096 bytes");
        assert!(parse(&format!("a == '{}'", "x".repeat(4089))).is_ok());

        let nest = |n: usize| format!("{}a{}", "(".repeat(n), ")".repeat(n));
        assert!(parse(&nest(12)).is_ok());
        let e = parse(&nest(13)).unwrap_err();
        assert_eq!(e.message, "filter nests deeper than 12 levels");
        assert_eq!(e.position, 12);
        let e = parse(&"!".repeat(100)).unwrap_err();
        assert_eq!(
            (e.position, e.message.as_str()),
            (12, "filter nests deeper than 12 levels")
        );
        assert!(parse(&format!("{}a", "!".repeat(12))).is_ok());
        let e = parse("!(!(!(!(!(!(!a))))))").unwrap_err();
        assert!(e.message.contains("deeper than 12"), "{e}");

        // 32 predicates + 31 `||` = 63 terms; one more predicate and operator is 65.
        let wide = |n: usize| vec!["a == 1"; n].join(" || ");
        assert_eq!(parse(&wide(32)).unwrap().node_count(), 63);
        let e = parse(&wide(33)).unwrap_err();
        assert_eq!(e.message, "filter is too complex: more than 64 terms");
        assert_eq!(e.position, 32 * "a == 1 || ".len());
        // A long chain fails early, at the first term over the limit.
        assert!(parse(&vec!["a"; 1000].join("&&")).is_err());

        let tight = Limits {
            max_len: 20,
            max_depth: 1,
            max_nodes: 3,
        };
        assert!(parse_with_limits("(a) && b", &tight).is_ok());
        assert!(parse_with_limits("!(a)", &tight).is_err());
        assert!(parse_with_limits("!a", &tight).is_ok());
        assert!(
            parse_with_limits("(!b)", &tight)
                .unwrap_err()
                .message
                .contains("deeper than 1 levels")
        );
        assert!(
            parse_with_limits("a && b && c", &tight)
                .unwrap_err()
                .message
                .contains("more than 3 terms")
        );
        assert!(
            parse_with_limits("a == 'xxxxxxxxxxxxxxx'", &tight)
                .unwrap_err()
                .message
                .contains("longer than 20 bytes")
        );

        assert_eq!(parse_optional("   "), Ok(None));
        assert_eq!(parse_optional(""), Ok(None));
        assert_eq!(parse_optional(" a "), Ok(Some(truthy("a"))));
        assert!(parse_optional("a ==").is_err());
    }
}
