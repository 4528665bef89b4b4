//! Tokenizer and recursive-descent parser, bounded by [`Limits`].

use crate::{CmpOp, Expr, FieldPath, FilterError, Limits, Literal, MatchKind, time};

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
    match t {
        None => "end of filter".into(),
        Some(Tok::Ident(s)) => format!("'{s}'"),
        Some(Tok::Str(s)) => format!("string {s:?}"),
        Some(Tok::Int(i)) => format!("number {i}"),
        Some(Tok::Float(f)) => format!("number {f}"),
        Some(Tok::Op(op)) => format!("'{}'", op.as_str()),
        Some(t) => format!(
            "'{}'",
            match t {
                Tok::LParen => "(",
                Tok::RParen => ")",
                Tok::LBracket => "[",
                Tok::RBracket => "]",
                Tok::Comma => ",",
                Tok::Dot => ".",
                Tok::Not => "!",
                Tok::And => "&&",
                _ => "||",
            }
        ),
    }
}

fn tokenize(src: &str) -> Result<Vec<(Tok, usize)>, FilterError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let two = |s: &str| src[i..].starts_with(s);
        let tok = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => Tok::LParen,
            b')' => Tok::RParen,
            b'[' => Tok::LBracket,
            b']' => Tok::RBracket,
            b',' => Tok::Comma,
            b'.' if !b.get(i + 1).is_some_and(u8::is_ascii_digit) => Tok::Dot,
            _ if two("&&") => {
                i += 1;
                Tok::And
            }
            _ if two("||") => {
                i += 1;
                Tok::Or
            }
            _ if two("==") => {
                i += 1;
                Tok::Op(CmpOp::Eq)
            }
            _ if two("!=") => {
                i += 1;
                Tok::Op(CmpOp::Ne)
            }
            _ if two("<=") => {
                i += 1;
                Tok::Op(CmpOp::Le)
            }
            _ if two(">=") => {
                i += 1;
                Tok::Op(CmpOp::Ge)
            }
            b'<' => Tok::Op(CmpOp::Lt),
            b'>' => Tok::Op(CmpOp::Gt),
            b'!' => Tok::Not,
            b'"' | b'\'' => {
                let (s, end) = string(src, i)?;
                out.push((Tok::Str(s), start));
                i = end;
                continue;
            }
            b'0'..=b'9' | b'-' | b'.' => {
                let (t, end) = number(src, i)?;
                out.push((t, start));
                i = end;
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let end = src[i..]
                    .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                    .map_or(src.len(), |n| i + n);
                out.push((Tok::Ident(src[i..end].to_string()), start));
                i = end;
                continue;
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(FilterError::new(i, format!("unexpected character {ch:?}")));
            }
        };
        out.push((tok, start));
        i += 1;
    }
    Ok(out)
}

fn string(src: &str, start: usize) -> Result<(String, usize), FilterError> {
    let quote = src.as_bytes()[start] as char;
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((off, c)) = chars.next() {
        let pos = start + 1 + off;
        match c {
            c if c == quote => return Ok((out, pos + 1)),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, 'r')) => out.push('\r'),
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                Some((_, '\'')) => out.push('\''),
                Some((_, 'u')) => {
                    let hex: String = (0..4)
                        .filter_map(|_| chars.next().map(|(_, h)| h))
                        .collect();
                    let ch = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32);
                    match ch {
                        Some(ch) if hex.len() == 4 => out.push(ch),
                        _ => {
                            return Err(FilterError::new(
                                pos,
                                "invalid \\u escape (expected 4 hex digits)",
                            ));
                        }
                    }
                }
                _ => return Err(FilterError::new(pos, "invalid escape in string")),
            },
            c => out.push(c),
        }
    }
    Err(FilterError::new(start, "unterminated string"))
}

fn number(src: &str, start: usize) -> Result<(Tok, usize), FilterError> {
    let b = src.as_bytes();
    let mut i = start;
    if b[i] == b'-' {
        i += 1;
    }
    let digits_start = i;
    while i < b.len()
        && (b[i].is_ascii_digit()
            || b[i] == b'.'
            || b[i] == b'e'
            || b[i] == b'E'
            || ((b[i] == b'-' || b[i] == b'+') && matches!(b[i - 1], b'e' | b'E')))
    {
        i += 1;
    }
    let text = &src[start..i];
    if i == digits_start {
        return Err(FilterError::new(start, "expected a number after '-'"));
    }
    let is_float = text.contains(['.', 'e', 'E']);
    let tok = if is_float {
        text.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Tok::Float)
    } else {
        text.parse::<i64>().ok().map(Tok::Int)
    };
    tok.map(|t| (t, i))
        .ok_or_else(|| FilterError::new(start, format!("invalid number {text:?}")))
}

struct Parser<'a> {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    len: usize,
    limits: &'a Limits,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    fn peek_at(&self, n: usize) -> Option<&Tok> {
        self.toks.get(self.pos + n).map(|(t, _)| t)
    }

    fn here(&self) -> usize {
        self.toks.get(self.pos).map_or(self.len, |(_, p)| *p)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(t, _)| t.clone());
        self.pos += 1;
        t
    }

    fn err<T>(&self, msg: impl Into<String>) -> Result<T, FilterError> {
        Err(FilterError::new(self.here(), msg))
    }

    fn expect(&mut self, want: &Tok, what: &str) -> Result<(), FilterError> {
        if self.peek() == Some(want) {
            self.pos += 1;
            Ok(())
        } else {
            self.err(format!("expected {what}, found {}", describe(self.peek())))
        }
    }

    fn deeper(&self, depth: usize) -> Result<usize, FilterError> {
        if depth >= self.limits.max_depth {
            self.err(format!(
                "filter nests deeper than {} levels",
                self.limits.max_depth
            ))
        } else {
            Ok(depth + 1)
        }
    }

    fn or(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let mut left = self.and(depth)?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            let right = self.and(depth)?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let mut left = self.unary(depth)?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            let right = self.unary(depth)?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, FilterError> {
        if self.peek() == Some(&Tok::Not) {
            self.pos += 1;
            let d = self.deeper(depth)?;
            return Ok(Expr::Not(Box::new(self.unary(d)?)));
        }
        self.primary(depth)
    }

    fn primary(&mut self, depth: usize) -> Result<Expr, FilterError> {
        match self.peek() {
            Some(Tok::LParen) => {
                self.pos += 1;
                let d = self.deeper(depth)?;
                let e = self.or(d)?;
                self.expect(&Tok::RParen, "')'")?;
                Ok(e)
            }
            Some(Tok::Ident(id)) if id == "has" && self.peek_at(1) == Some(&Tok::LParen) => {
                self.pos += 2;
                let path = self.path()?;
                self.expect(&Tok::RParen, "')' after has(field")?;
                Ok(Expr::Has(path))
            }
            Some(Tok::Str(_) | Tok::Int(_) | Tok::Float(_)) => self.literal_in(),
            Some(Tok::Ident(id))
                if matches!(id.as_str(), "true" | "false" | "null" | "timestamp") =>
            {
                self.literal_in()
            }
            Some(Tok::Ident(_)) => self.predicate(),
            other => self.err(format!(
                "expected a field, '(' or '!', found {}",
                describe(other)
            )),
        }
    }

    /// `"vip" in tags`
    fn literal_in(&mut self) -> Result<Expr, FilterError> {
        let value = self.literal()?;
        match self.peek() {
            Some(Tok::Ident(i)) if i == "in" => {
                self.pos += 1;
                let field = self.path()?;
                Ok(Expr::Contains { field, value })
            }
            other => self.err(format!(
                "a literal on the left must be followed by 'in <list field>', found {}",
                describe(other)
            )),
        }
    }

    fn path(&mut self) -> Result<FieldPath, FilterError> {
        let mut segs = match self.next() {
            Some(Tok::Ident(id)) if !is_keyword(&id) => vec![id],
            other => {
                self.pos -= 1;
                return self.err(format!(
                    "expected a field name, found {}",
                    describe(other.as_ref())
                ));
            }
        };
        loop {
            match (self.peek(), self.peek_at(1), self.peek_at(2)) {
                (Some(Tok::Dot), Some(Tok::Ident(m)), Some(Tok::LParen)) if method(m).is_some() => {
                    break;
                }
                (Some(Tok::Dot), Some(Tok::Ident(id)), _) => {
                    let id = id.clone();
                    self.pos += 2;
                    segs.push(id);
                }
                (Some(Tok::Dot), other, _) => {
                    let found = describe(other);
                    self.pos += 1;
                    return self.err(format!("expected a field name after '.', found {found}"));
                }
                (Some(Tok::LBracket), Some(Tok::Str(key)), Some(Tok::RBracket)) => {
                    let key = key.clone();
                    self.pos += 3;
                    segs.push(key);
                }
                (Some(Tok::LBracket), _, _) => {
                    self.pos += 1;
                    return self.err("expected [\"key\"] with a quoted key");
                }
                _ => break,
            }
        }
        Ok(FieldPath(segs))
    }

    fn literal(&mut self) -> Result<Literal, FilterError> {
        let at = self.here();
        match self.next() {
            Some(Tok::Str(s)) => Ok(Literal::String(s)),
            Some(Tok::Int(i)) => Ok(Literal::Int(i)),
            Some(Tok::Float(f)) => Ok(Literal::Float(f)),
            Some(Tok::Ident(i)) if i == "true" => Ok(Literal::Bool(true)),
            Some(Tok::Ident(i)) if i == "false" => Ok(Literal::Bool(false)),
            Some(Tok::Ident(i)) if i == "null" => Ok(Literal::Null),
            Some(Tok::Ident(i)) if i == "timestamp" => {
                self.expect(&Tok::LParen, "'(' after timestamp")?;
                let s = match self.next() {
                    Some(Tok::Str(s)) => s,
                    other => {
                        self.pos -= 1;
                        return self.err(format!(
                            "timestamp() takes a quoted RFC 3339 time, found {}",
                            describe(other.as_ref())
                        ));
                    }
                };
                self.expect(&Tok::RParen, "')' after the timestamp")?;
                let (seconds, nanos) = time::parse_rfc3339(&s).ok_or_else(|| {
                    FilterError::new(
                        at,
                        format!("{s:?} is not an RFC 3339 time like \"2024-01-01T00:00:00Z\""),
                    )
                })?;
                Ok(Literal::Timestamp { seconds, nanos })
            }
            other => {
                self.pos -= 1;
                self.err(format!(
                    "expected a literal, found {}",
                    describe(other.as_ref())
                ))
            }
        }
    }

    fn predicate(&mut self) -> Result<Expr, FilterError> {
        let field = self.path()?;
        match self.peek().cloned() {
            Some(Tok::Op(op)) => {
                self.pos += 1;
                if self.peek().is_none() {
                    return self.err(format!("expected a literal after '{}'", op.as_str()));
                }
                let value = self.literal()?;
                Ok(Expr::Compare { field, op, value })
            }
            Some(Tok::Ident(i)) if i == "in" => {
                self.pos += 1;
                self.expect(&Tok::LBracket, "'[' after 'in'")?;
                let mut values = vec![self.literal()?];
                while self.peek() == Some(&Tok::Comma) {
                    self.pos += 1;
                    values.push(self.literal()?);
                }
                self.expect(&Tok::RBracket, "']' or ','")?;
                Ok(Expr::In { field, values })
            }
            Some(Tok::Dot) => {
                self.pos += 1;
                let kind = match self.next() {
                    Some(Tok::Ident(m)) => method(&m),
                    _ => None,
                };
                let Some(kind) = kind else {
                    self.pos -= 1;
                    return self.err("expected startsWith, endsWith or contains");
                };
                self.expect(&Tok::LParen, "'('")?;
                let pattern = match self.next() {
                    Some(Tok::Str(s)) => s,
                    other => {
                        self.pos -= 1;
                        return self.err(format!(
                            "expected a quoted string, found {}",
                            describe(other.as_ref())
                        ));
                    }
                };
                self.expect(&Tok::RParen, "')'")?;
                Ok(Expr::StringMatch {
                    field,
                    kind,
                    pattern,
                })
            }
            // A bare field is a boolean test.
            _ => Ok(Expr::Compare {
                field,
                op: CmpOp::Eq,
                value: Literal::Bool(true),
            }),
        }
    }
}

fn is_keyword(s: &str) -> bool {
    matches!(s, "true" | "false" | "null" | "in" | "has" | "timestamp")
}

fn method(m: &str) -> Option<MatchKind> {
    match m {
        "startsWith" => Some(MatchKind::StartsWith),
        "endsWith" => Some(MatchKind::EndsWith),
        "contains" => Some(MatchKind::Contains),
        _ => None,
    }
}

/// Parses with the default [`Limits`]; an empty filter is an error.
pub fn parse(src: &str) -> Result<Expr, FilterError> {
    parse_with_limits(src, &Limits::default())
}

/// `Ok(None)` for an empty or blank filter (meaning "everything").
pub fn parse_optional(src: &str) -> Result<Option<Expr>, FilterError> {
    if src.trim().is_empty() {
        Ok(None)
    } else {
        parse(src).map(Some)
    }
}

pub fn parse_with_limits(src: &str, limits: &Limits) -> Result<Expr, FilterError> {
    if src.len() > limits.max_len {
        return Err(FilterError::new(
            limits.max_len,
            format!("filter is longer than {} bytes", limits.max_len),
        ));
    }
    if src.trim().is_empty() {
        return Err(FilterError::new(0, "filter is empty"));
    }
    let toks = tokenize(src)?;
    let mut p = Parser {
        toks,
        pos: 0,
        len: src.len(),
        limits,
    };
    let expr = p.or(0)?;
    if p.pos < p.toks.len() {
        return p.err(format!(
            "unexpected {} after a complete expression",
            describe(p.peek())
        ));
    }
    if expr.node_count() > limits.max_nodes {
        return Err(FilterError::new(
            0,
            format!(
                "filter is too complex: more than {} terms",
                limits.max_nodes
            ),
        ));
    }
    Ok(expr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Expr as E, FieldPath as P, Literal as L};

    fn f(s: &str) -> P {
        P(s.split('.').map(String::from).collect())
    }

    #[test]
    fn comparisons_and_membership() {
        assert_eq!(
            parse("churn_probability > 0.7 && value_tier in [\"platinum\",\"gold\"]").unwrap(),
            E::And(
                Box::new(E::Compare {
                    field: f("churn_probability"),
                    op: CmpOp::Gt,
                    value: L::Float(0.7)
                }),
                Box::new(E::In {
                    field: f("value_tier"),
                    values: vec![L::String("platinum".into()), L::String("gold".into())]
                })
            )
        );
        assert_eq!(
            parse("'vip' in tags").unwrap(),
            E::Contains {
                field: f("tags"),
                value: L::String("vip".into())
            }
        );
        assert_eq!(
            parse("attributes[\"plan-x\"] != 'free'").unwrap(),
            E::Compare {
                field: P(vec!["attributes".into(), "plan-x".into()]),
                op: CmpOp::Ne,
                value: L::String("free".into())
            }
        );
        assert_eq!(
            parse("region.startsWith(\"EU\")").unwrap(),
            E::StringMatch {
                field: f("region"),
                kind: MatchKind::StartsWith,
                pattern: "EU".into()
            }
        );
        assert_eq!(
            parse("has(firmographics.credit_rating)").unwrap(),
            E::Has(f("firmographics.credit_rating"))
        );
        assert_eq!(
            parse("create_time >= timestamp(\"2024-01-01T00:00:00Z\")").unwrap(),
            E::Compare {
                field: f("create_time"),
                op: CmpOp::Ge,
                value: L::Timestamp {
                    seconds: 1_704_067_200,
                    nanos: 0
                }
            }
        );
        assert_eq!(
            parse("erased").unwrap(),
            E::Compare {
                field: f("erased"),
                op: CmpOp::Eq,
                value: L::Bool(true)
            }
        );
        assert_eq!(
            parse("n >= -3").unwrap(),
            E::Compare {
                field: f("n"),
                op: CmpOp::Ge,
                value: L::Int(-3)
            }
        );
    }

    #[test]
    fn precedence() {
        let e = parse("a || b && !c").unwrap();
        let t = |n: &str| E::Compare {
            field: f(n),
            op: CmpOp::Eq,
            value: L::Bool(true),
        };
        assert_eq!(
            e,
            E::Or(
                Box::new(t("a")),
                Box::new(E::And(Box::new(t("b")), Box::new(E::Not(Box::new(t("c"))))))
            )
        );
    }

    #[test]
    fn errors_say_what_and_where() {
        let cases = [
            ("kind ==", "expected a literal after '=='", 7),
            ("name == \"abc", "unterminated string", 8),
            ("(a == 1", "expected ')'", 7),
            ("a == 1 b", "unexpected 'b'", 7),
            ("t > timestamp(\"yesterday\")", "not an RFC 3339 time", 4),
            ("a == 1 &&", "expected a field", 9),
            ("a # 1", "unexpected character", 2),
            ("", "filter is empty", 0),
        ];
        for (src, msg, pos) in cases {
            let e = parse(src).unwrap_err();
            assert!(e.message.contains(msg), "{src}: {e}");
            assert_eq!(e.position, pos, "{src}: {e}");
        }
    }

    #[test]
    fn limits_bound_length_depth_and_terms() {
        assert!(
            parse(&"a".repeat(5000))
                .unwrap_err()
                .message
                .contains("longer than 4096")
        );
        let deep = format!("{}a{}", "(".repeat(13), ")".repeat(13));
        assert!(parse(&deep).unwrap_err().message.contains("deeper than 12"));
        assert!(
            parse(&"!".repeat(100))
                .unwrap_err()
                .message
                .contains("deeper")
        );
        let wide = vec!["a == 1"; 40].join(" || ");
        assert!(
            parse(&wide)
                .unwrap_err()
                .message
                .contains("more than 64 terms")
        );
        assert!(parse_optional("   ").unwrap().is_none());
    }
}
