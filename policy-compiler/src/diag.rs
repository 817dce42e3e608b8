//! Error and warning records. Every problem names where it is (file, document, object) and which field, so
//! a platform engineer can fix all of them from one run instead of one per run.

use std::fmt;

/// Where an object came from: the file as the user named it, its 1-based document index, and (inside a
/// `kind: List`) the item index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Position of the file among the inputs, for ordering errors as the input reads.
    pub source: usize,
    pub file: String,
    pub doc: usize,
    pub item: Option<usize>,
}

impl Origin {
    fn order(&self) -> (usize, usize, usize) {
        (self.source, self.doc, self.item.unwrap_or(0))
    }
}

/// An error location: its text and, for locations inside the input, where it sorts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub text: String,
    pub order: Option<(usize, usize, usize)>,
}

impl Loc {
    /// `text` about the object at `origin`.
    pub fn at(origin: &Origin, text: String) -> Loc {
        Loc {
            text,
            order: Some(origin.order()),
        }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<String> for Loc {
    fn from(text: String) -> Loc {
        Loc { text, order: None }
    }
}

impl From<&str> for Loc {
    fn from(text: &str) -> Loc {
        Loc {
            text: text.to_string(),
            order: None,
        }
    }
}

impl From<&Loc> for Loc {
    fn from(loc: &Loc) -> Loc {
        loc.clone()
    }
}

impl From<&Origin> for Loc {
    fn from(origin: &Origin) -> Loc {
        Loc::at(origin, origin.to_string())
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} doc {}", self.file, self.doc)?;
        if let Some(i) = self.item {
            write!(f, " items[{i}]")?;
        }
        Ok(())
    }
}

/// One error: `<where>: <field path>: <message>`; empty parts are left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diag {
    /// e.g. `policies.yaml doc 3 XAccessPolicy default/p1`, or `policies.yaml: line 4 column 3`.
    pub location: String,
    /// Input position, when the problem is inside the input (see [`Diags::sort`]).
    pub order: Option<(usize, usize, usize)>,
    /// e.g. `spec.rules[0].name`; empty for whole-object problems.
    pub path: String,
    pub message: String,
}

impl Diag {
    pub fn new(
        location: impl Into<Loc>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Diag {
        let loc = location.into();
        Diag {
            location: loc.text,
            order: loc.order,
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for part in [&self.location, &self.path] {
            if !part.is_empty() {
                write!(f, "{sep}{part}")?;
                sep = ": ";
            }
        }
        write!(f, "{sep}{}", self.message)
    }
}

/// The errors of one run, reported together.
#[derive(Debug, Default)]
pub struct Diags {
    pub errors: Vec<Diag>,
    pub warnings: Vec<String>,
}

impl Diags {
    pub fn error(
        &mut self,
        location: impl Into<Loc>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.errors.push(Diag::new(location, path, message));
    }

    pub fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }

    /// Orders errors as the input reads (file, document, item), keeping the order of errors at the same
    /// place; errors outside the input (command-line options) come first.
    pub fn sort(&mut self) {
        self.errors
            .sort_by_key(|d| d.order.map_or((0, (0, 0, 0)), |o| (1, o)));
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }
}

/// Field paths in Kubernetes' notation (`spec.rules[0].name`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(String);

impl FieldPath {
    pub fn root() -> FieldPath {
        FieldPath(String::new())
    }

    pub fn field(&self, name: &str) -> FieldPath {
        if self.0.is_empty() {
            FieldPath(name.to_string())
        } else {
            FieldPath(format!("{}.{name}", self.0))
        }
    }

    pub fn index(&self, i: usize) -> FieldPath {
        FieldPath(format!("{}[{i}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diag_format_skips_empty_parts() {
        assert_eq!(
            Diag::new("a.yaml doc 1 XBackend ns/b", "spec.mcp", "bad").to_string(),
            "a.yaml doc 1 XBackend ns/b: spec.mcp: bad"
        );
        assert_eq!(
            Diag::new("a.yaml doc 1", "", "bad").to_string(),
            "a.yaml doc 1: bad"
        );
        assert_eq!(Diag::new("", "", "bad").to_string(), "bad");
    }

    #[test]
    fn field_paths() {
        let p = FieldPath::root()
            .field("spec")
            .field("rules")
            .index(0)
            .field("name");
        assert_eq!(p.as_str(), "spec.rules[0].name");
    }
}
