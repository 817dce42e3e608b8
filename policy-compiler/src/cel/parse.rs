//! Recursive-descent parser for CEL's grammar (cel-spec `langdef.md`), producing a positioned syntax tree.
//! It accepts CEL syntax, including constructs Grantwall does not support (map literals, bytes, message
//! construction), so the checker can name them precisely; nesting is bounded while parsing, so no input can
//! exhaust the stack.

use super::lex::{Tok, Token};
use super::CelError;
use grantwall_core::cel::LIMITS;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: usize,
    pub column: usize,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Double(f64),
    Str(String),
    Bytes,
    Ident(String),
    Select(Box<Node>, String),
    /// `f(args)` (no target) or `target.f(args)`.
    Call(Option<Box<Node>>, String, Vec<Node>),
    Index(Box<Node>, Box<Node>),
    List(Vec<Node>),
    /// `{k: v}` or `Msg{f: v}`: parsed only to be refused with a position.
    MapOrMessage,
    Unary(&'static str, Box<Node>),
    Binary(&'static str, Box<Node>, Box<Node>),
    /// `a && b && …` or `a || b || …`, kept flat so long chains cost no depth.
    Logic(&'static str, Vec<Node>),
    Cond(Box<Node>, Box<Node>, Box<Node>),
}

pub fn parse(tokens: &[Token]) -> Result<Node, CelError> {
    let mut p = Parser { tokens, pos: 0, depth: 0 };
    let node = p.expr()?;
    let t = p.peek();
    if t.tok != Tok::End {
        return Err(p.error_at(t, format!("unexpected {} after the end of the expression", describe(&t.tok))));
    }
    Ok(node)
}

struct Parser<'t> {
    tokens: &'t [Token],
    pos: usize,
    /// Current syntactic nesting (parentheses, calls, operators); bounded by `LIMITS.depth`.
    depth: usize,
}

const END: Token = Token { tok: Tok::End, line: 0, column: 0 };

impl<'t> Parser<'t> {
    fn peek(&self) -> &'t Token {
        self.tokens.get(self.pos).unwrap_or(&END)
    }

    fn next(&mut self) -> &'t Token {
        let t = self.peek();
        self.pos += 1;
        t
    }

    fn is(&self, p: &str) -> bool {
        matches!(&self.peek().tok, Tok::Punct(q) if *q == p)
    }

    fn eat(&mut self, p: &str) -> bool {
        let hit = self.is(p);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn expect(&mut self, p: &str) -> Result<(), CelError> {
        if self.eat(p) {
            return Ok(());
        }
        let t = self.peek();
        Err(self.error_at(t, format!("expected '{p}', found {}", describe(&t.tok))))
    }

    fn error_at(&self, t: &Token, message: String) -> CelError {
        CelError { line: t.line, column: t.column, message }
    }

    /// Enter one level of nesting; refuses expressions nested beyond the limit the filter enforces.
    fn enter(&mut self, at: &Token) -> Result<(), CelError> {
        self.depth += 1;
        if self.depth > LIMITS.depth {
            return Err(self.error_at(at, format!("expression is nested deeper than {} levels", LIMITS.depth)));
        }
        Ok(())
    }

    fn node(t: &Token, kind: Kind) -> Node {
        Node { line: t.line, column: t.column, kind }
    }

    fn expr(&mut self) -> Result<Node, CelError> {
        let at = self.peek();
        self.enter(at)?;
        let cond = self.binary(0)?;
        let result = if self.is("?") {
            let q = self.next();
            let a = self.binary(0)?;
            self.expect(":")?;
            let b = self.expr()?;
            Ok(Self::node(q, Kind::Cond(Box::new(cond), Box::new(a), Box::new(b))))
        } else {
            Ok(cond)
        };
        self.depth -= 1;
        result
    }

    /// Precedence climbing over CEL's binary levels: `||`, `&&`, relations (incl. `in`), `+ -`, `* / %`.
    fn binary(&mut self, level: usize) -> Result<Node, CelError> {
        const LEVELS: [&[&str]; 5] =
            [&["||"], &["&&"], &["==", "!=", "<", "<=", ">", ">=", "in"], &["+", "-"], &["*", "/", "%"]];
        let Some(ops) = LEVELS.get(level) else { return self.unary() };
        let mut left = self.binary(level + 1)?;
        if level < 2 {
            // `&&` / `||`: one flat node for the whole chain.
            let Some(op) = ops.first().copied() else { return Ok(left) };
            if !self.is(op) {
                return Ok(left);
            }
            let at = self.peek();
            let mut items = vec![left];
            while self.eat(op) {
                items.push(self.binary(level + 1)?);
            }
            return Ok(Self::node(at, Kind::Logic(op, items)));
        }
        let mut chain = 0usize;
        loop {
            let t = self.peek();
            let op = match &t.tok {
                Tok::Punct(p) if ops.contains(p) => *p,
                Tok::Ident(w) if w == "in" && ops.contains(&"in") => "in",
                _ => break,
            };
            self.pos += 1;
            // Left-deep chains (`a + b + c …`) nest one level per operator.
            chain += 1;
            self.enter(t)?;
            let right = self.binary(level + 1)?;
            left = Self::node(t, Kind::Binary(op, Box::new(left), Box::new(right)));
        }
        self.depth -= chain;
        Ok(left)
    }

    fn unary(&mut self) -> Result<Node, CelError> {
        let t = self.peek();
        let op = match &t.tok {
            Tok::Punct("!") => "!",
            Tok::Punct("-") => "-",
            _ => return self.member(),
        };
        self.pos += 1;
        self.enter(t)?;
        let inner = self.unary()?;
        self.depth -= 1;
        Ok(Self::node(t, Kind::Unary(op, Box::new(inner))))
    }

    fn member(&mut self) -> Result<Node, CelError> {
        let mut node = self.primary()?;
        let mut chain = 0usize;
        loop {
            let t = self.peek();
            if self.eat(".") {
                let name_tok = self.next();
                let Tok::Ident(name) = &name_tok.tok else {
                    return Err(self.error_at(name_tok, format!("expected a field or method name after '.', found {}", describe(&name_tok.tok))));
                };
                chain += 1;
                self.enter(t)?;
                if self.is("(") {
                    let args = self.args(")")?;
                    node = Self::node(name_tok, Kind::Call(Some(Box::new(node)), name.clone(), args));
                } else {
                    node = Self::node(name_tok, Kind::Select(Box::new(node), name.clone()));
                }
            } else if self.eat("[") {
                chain += 1;
                self.enter(t)?;
                let key = self.expr()?;
                self.expect("]")?;
                node = Self::node(t, Kind::Index(Box::new(node), Box::new(key)));
            } else if self.is("{") {
                // Message construction `T{…}`.
                self.skip_braces()?;
                node = Self::node(t, Kind::MapOrMessage);
            } else {
                break;
            }
        }
        self.depth -= chain;
        Ok(node)
    }

    fn primary(&mut self) -> Result<Node, CelError> {
        let t = self.next();
        Ok(match &t.tok {
            Tok::Int(i) => Self::node(t, Kind::Int(*i)),
            Tok::Uint(u) => Self::node(t, Kind::Uint(*u)),
            Tok::Double(d) => Self::node(t, Kind::Double(*d)),
            Tok::Str(s) => Self::node(t, Kind::Str(s.clone())),
            Tok::Bytes => Self::node(t, Kind::Bytes),
            Tok::Ident(w) => match w.as_str() {
                "true" => Self::node(t, Kind::Bool(true)),
                "false" => Self::node(t, Kind::Bool(false)),
                "null" => Self::node(t, Kind::Null),
                _ if self.is("(") => {
                    let args = self.args(")")?;
                    Self::node(t, Kind::Call(None, w.clone(), args))
                }
                _ => Self::node(t, Kind::Ident(w.clone())),
            },
            Tok::Punct(".") => {
                // A leading dot names the root scope (`.request.path`).
                let name = self.next();
                match &name.tok {
                    Tok::Ident(w) => Self::node(name, Kind::Ident(w.clone())),
                    other => return Err(self.error_at(name, format!("expected an identifier after '.', found {}", describe(other)))),
                }
            }
            Tok::Punct("(") => {
                let e = self.expr()?;
                self.expect(")")?;
                e
            }
            Tok::Punct("[") => {
                self.pos -= 1;
                let items = self.args("]")?;
                Self::node(t, Kind::List(items))
            }
            Tok::Punct("{") => {
                self.pos -= 1;
                self.skip_braces()?;
                Self::node(t, Kind::MapOrMessage)
            }
            other => return Err(self.error_at(t, format!("unexpected {}", describe(other)))),
        })
    }

    /// `( a, b )` or `[ a, b ]` (trailing comma allowed); the opening token is next.
    fn args(&mut self, close: &str) -> Result<Vec<Node>, CelError> {
        let open = self.next();
        self.enter(open)?;
        let mut items = Vec::new();
        while !self.eat(close) {
            items.push(self.expr()?);
            if !self.eat(",") {
                self.expect(close)?;
                break;
            }
        }
        self.depth -= 1;
        Ok(items)
    }

    /// Skip a balanced `{ … }` (refused later, but parsed so the error points at its start).
    fn skip_braces(&mut self) -> Result<(), CelError> {
        let open = self.next();
        let mut depth = 1usize;
        while depth > 0 {
            let t = self.next();
            match &t.tok {
                Tok::Punct("{") => depth += 1,
                Tok::Punct("}") => depth -= 1,
                Tok::End => return Err(self.error_at(open, "unterminated '{'".to_owned())),
                _ => {}
            }
        }
        Ok(())
    }
}

pub fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(w) => format!("identifier '{w}'"),
        Tok::Int(i) => format!("number {i}"),
        Tok::Uint(u) => format!("number {u}u"),
        Tok::Double(d) => format!("number {d}"),
        Tok::Str(_) => "a string".to_owned(),
        Tok::Bytes => "a bytes literal".to_owned(),
        Tok::Punct(p) => format!("'{p}'"),
        Tok::End => "the end of the expression".to_owned(),
    }
}
