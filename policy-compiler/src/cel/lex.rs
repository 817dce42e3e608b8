//! CEL tokens with their line and column (1-based, counted in characters), so every error can point at the
//! exact place in the policy's expression.

use super::CelError;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(String),
    Int(i64),
    Uint(u64),
    Double(f64),
    Str(String),
    /// `b'…'`: refused by the parser with a position.
    Bytes,
    /// Operators and punctuation, as written (`==`, `&&`, `(`, …).
    Punct(&'static str),
    End,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub line: usize,
    pub column: usize,
}

const PUNCTS: [&str; 24] = [
    "==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "+", "-", "*", "/", "%", "?", ":", ".", ",", "[", "]", "(",
    ")", "{", "}",
];

pub fn tokenize(src: &str) -> Result<Vec<Token>, CelError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut line_start) = (0usize, 1usize, 0usize);
    while let Some(&c) = chars.get(i) {
        let column = i - line_start + 1;
        let err = |message: String| CelError { line, column, message };
        if c == '\n' {
            i += 1;
            line += 1;
            line_start = i;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            while chars.get(i).is_some_and(|c| *c != '\n') {
                i += 1;
            }
            continue;
        }
        let start = i;
        let tok = if c.is_ascii_alphabetic() || c == '_' {
            while chars.get(i).is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_') {
                i += 1;
            }
            let word: String = chars.get(start..i).unwrap_or_default().iter().collect();
            let quote = chars.get(i).filter(|q| **q == '\'' || **q == '"');
            match (word.as_str(), quote) {
                ("r" | "R", Some(_)) => Tok::Str(string(&chars, &mut i, true).map_err(err)?),
                ("b" | "B", Some(_)) => {
                    string(&chars, &mut i, false).map_err(err)?;
                    Tok::Bytes
                }
                ("rb" | "br" | "RB" | "BR" | "Rb" | "rB" | "Br" | "bR", Some(_)) => {
                    string(&chars, &mut i, true).map_err(err)?;
                    Tok::Bytes
                }
                _ => Tok::Ident(word),
            }
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            number(&chars, &mut i).map_err(err)?
        } else if c == '\'' || c == '"' {
            Tok::Str(string(&chars, &mut i, false).map_err(err)?)
        } else {
            let two: String = chars.get(i..i + 2).unwrap_or_default().iter().collect();
            let p = PUNCTS
                .iter()
                .find(|p| p.len() == 2 && **p == two)
                .or_else(|| PUNCTS.iter().find(|p| p.len() == 1 && p.starts_with(c)))
                .ok_or_else(|| err(format!("unexpected character {c:?}")))?;
            i += p.len();
            Tok::Punct(p)
        };
        out.push(Token { tok, line, column });
    }
    let column = chars.len() - line_start + 1;
    out.push(Token { tok: Tok::End, line, column });
    Ok(out)
}

fn number(chars: &[char], i: &mut usize) -> Result<Tok, String> {
    let start = *i;
    let take = |i: &mut usize, pred: fn(&char) -> bool| {
        while chars.get(*i).is_some_and(pred) {
            *i += 1;
        }
    };
    if chars.get(*i) == Some(&'0') && matches!(chars.get(*i + 1), Some('x' | 'X')) {
        *i += 2;
        let digits_at = *i;
        take(i, char::is_ascii_hexdigit);
        let digits: String = chars.get(digits_at..*i).unwrap_or_default().iter().collect();
        let unsigned = matches!(chars.get(*i), Some('u' | 'U'));
        if unsigned {
            *i += 1;
            return u64::from_str_radix(&digits, 16).map(Tok::Uint).map_err(|_| "hex literal out of range".to_owned());
        }
        return i64::from_str_radix(&digits, 16).map(Tok::Int).map_err(|_| "hex literal out of range".to_owned());
    }
    take(i, char::is_ascii_digit);
    let mut double = false;
    if chars.get(*i) == Some(&'.') && chars.get(*i + 1).is_some_and(char::is_ascii_digit) {
        double = true;
        *i += 1;
        take(i, char::is_ascii_digit);
    }
    if matches!(chars.get(*i), Some('e' | 'E')) {
        let mut j = *i + 1;
        if matches!(chars.get(j), Some('+' | '-')) {
            j += 1;
        }
        if chars.get(j).is_some_and(char::is_ascii_digit) {
            double = true;
            *i = j;
            take(i, char::is_ascii_digit);
        }
    }
    let text: String = chars.get(start..*i).unwrap_or_default().iter().collect();
    if double {
        return match text.parse::<f64>() {
            Ok(d) if d.is_finite() => Ok(Tok::Double(d)),
            _ => Err(format!("double literal {text} out of range")),
        };
    }
    if matches!(chars.get(*i), Some('u' | 'U')) {
        *i += 1;
        return text.parse::<u64>().map(Tok::Uint).map_err(|_| format!("uint literal {text}u out of range"));
    }
    text.parse::<i64>().map(Tok::Int).map_err(|_| format!("int literal {text} out of range (64-bit)"))
}

/// A quoted string starting at `chars[*i]` (the quote): single, double or triple quotes; `raw` keeps
/// backslashes as written.
fn string(chars: &[char], i: &mut usize, raw: bool) -> Result<String, String> {
    let q = chars.get(*i).copied().unwrap_or('\'');
    let triple = chars.get(*i + 1) == Some(&q) && chars.get(*i + 2) == Some(&q);
    *i += if triple { 3 } else { 1 };
    let mut out = String::new();
    loop {
        let Some(&c) = chars.get(*i) else { return Err("unterminated string literal".to_owned()) };
        if c == q && (!triple || (chars.get(*i + 1) == Some(&q) && chars.get(*i + 2) == Some(&q))) {
            *i += if triple { 3 } else { 1 };
            return Ok(out);
        }
        if c == '\n' && !triple {
            return Err("unterminated string literal (newline inside quotes)".to_owned());
        }
        *i += 1;
        if c != '\\' || raw {
            out.push(c);
            continue;
        }
        let Some(&e) = chars.get(*i) else { return Err("unterminated string literal".to_owned()) };
        *i += 1;
        let simple = match e {
            'n' => Some('\n'),
            't' => Some('\t'),
            'r' => Some('\r'),
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'v' => Some('\u{b}'),
            '\\' | '\'' | '"' | '`' | '?' => Some(e),
            _ => None,
        };
        if let Some(s) = simple {
            out.push(s);
            continue;
        }
        let (radix, len) = match e {
            'x' | 'X' => (16, 2),
            'u' => (16, 4),
            'U' => (16, 8),
            '0'..='3' => (8, 2),
            _ => return Err(format!("unknown escape sequence \\{e}")),
        };
        let mut digits: String = chars.get(*i..*i + len).unwrap_or_default().iter().collect();
        if radix == 8 {
            digits.insert(0, e);
        }
        let code = u32::from_str_radix(&digits, radix).map_err(|_| format!("bad escape sequence \\{e}{digits}"))?;
        *i += len;
        out.push(char::from_u32(code).ok_or_else(|| format!("escape \\{e}{digits} is not a Unicode scalar value"))?);
    }
}
