//! Diagnostics: errors and warnings that name the file, the line (or XML element path) and the rule.

use std::fmt;

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file as given by the caller.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<u32>,
    /// XML element path such as `/DHCPServer/IPv4/Scopes/Scope[2]/StartRange`, for XML input.
    pub path: Option<String>,
    /// Short rule id, e.g. `range-outside-subnet`.
    pub rule: &'static str,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {} [{}]", self.message, self.rule)?;
        if let Some(path) = &self.path {
            write!(f, " (at {path})")?;
        }
        Ok(())
    }
}

/// Every error found while loading a scope file (all of them, not just the first), with the warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The errors; never empty.
    pub errors: Vec<Diagnostic>,
    /// Warnings found along the way (unknown elements or commands...).
    pub warnings: Vec<Diagnostic>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A position in the source: line, plus the element path for XML.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub line: u32,
    pub path: Option<String>,
}

impl Pos {
    pub fn line(line: u32) -> Self {
        Pos { line, path: None }
    }
}

/// Collects diagnostics for one file.
#[derive(Debug, Default)]
pub(crate) struct Diags {
    pub file: String,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

/// More errors than this and the rest are summarised (keeps a 10 000-scope disaster readable and bounded).
const MAX_ERRORS: usize = 1000;

impl Diags {
    pub fn new(file: &str) -> Self {
        Diags {
            file: file.to_string(),
            ..Diags::default()
        }
    }

    fn make(&self, pos: &Pos, rule: &'static str, message: String) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            line: (pos.line > 0).then_some(pos.line),
            path: pos.path.clone(),
            rule,
            message,
        }
    }

    pub fn error(&mut self, pos: &Pos, rule: &'static str, message: impl Into<String>) {
        if self.errors.len() < MAX_ERRORS {
            let d = self.make(pos, rule, message.into());
            self.errors.push(d);
        } else if self.errors.len() == MAX_ERRORS {
            let d = self.make(
                &Pos::default(),
                "too-many-errors",
                format!("more than {MAX_ERRORS} errors; the rest are not shown"),
            );
            self.errors.push(d);
        }
    }

    /// The collected diagnostics as the error a load returns.
    pub fn into_errors(self) -> ConfigErrors {
        ConfigErrors {
            errors: self.errors,
            warnings: self.warnings,
        }
    }

    pub fn warning(&mut self, pos: &Pos, rule: &'static str, message: impl Into<String>) {
        if self.warnings.len() < MAX_ERRORS {
            let d = self.make(pos, rule, message.into());
            self.warnings.push(d);
        }
    }
}
