//! The `.reg` statement reader: applies each line onto a [`RegistryTree`] in file order and turns
//! every line regedit would skip into a [`Warning`].

use std::path::Path;

use crate::error::{RegError, Warning};
use crate::tree::{split_path, Origin, RegistryTree};
use crate::value::{RegValueData, StringBytes, REG_BINARY};

/// Header of version 5 files (regedit, `reg export`).
pub const HEADER_V5: &str = "Windows Registry Editor Version 5.00";
/// Header of REGEDIT4 (Win9x/NT4) files.
pub const HEADER_V4: &str = "REGEDIT4";

/// The key that values are currently being assigned to.
enum Current {
    /// Before the first key line.
    NoKey,
    /// A usable key.
    Key {
        root: &'static str,
        segments: Vec<String>,
    },
    /// The last key line was skipped or deleted a key: values have nowhere to go.
    Unusable { line: usize, why: &'static str },
}

struct Reader<'a> {
    lines: Vec<&'a str>,
    file: &'a Path,
    strings: StringBytes,
    warnings: Vec<Warning>,
}

impl Reader<'_> {
    fn warn(&mut self, line: usize, reason: impl Into<String>) {
        self.warnings.push(Warning {
            file: self.file.to_path_buf(),
            line,
            reason: reason.into(),
        });
    }
}

/// Applies `.reg` text onto `tree`; see [`RegistryTree::apply_str`].
pub(crate) fn apply(
    tree: &mut RegistryTree,
    text: &str,
    file: &Path,
) -> Result<Vec<Warning>, RegError> {
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let header = lines.first().copied().unwrap_or_default();
    // Text after the header on the same line is ignored, as regedit does.
    let strings = if header.starts_with(HEADER_V5) {
        StringBytes::Utf16Le
    } else if header.starts_with(HEADER_V4) {
        StringBytes::Ansi
    } else {
        return Err(RegError::BadHeader {
            file: file.to_path_buf(),
            found: header.chars().take(80).collect(),
        });
    };
    let mut reader = Reader {
        lines,
        file,
        strings,
        warnings: Vec::new(),
    };
    let mut current = Current::NoKey;
    let mut index = 1;
    while index < reader.lines.len() {
        let line_no = index + 1;
        let line = reader.lines[index].trim_start_matches([' ', '\t']);
        index += 1;
        if line.is_empty() || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            current = key_line(tree, &mut reader, rest, line_no);
        } else if line.starts_with('"') || line.starts_with('@') {
            let (statement, next) = value_statement(&mut reader, line, index, line_no);
            index = next;
            if let Some(statement) = statement {
                assign(tree, &mut reader, &current, statement, line_no);
            }
        } else {
            reader.warn(
                line_no,
                format!(
                    "unrecognised line {:?} (expected [key], \"name\"=data, @=data or a ; comment); skipped",
                    snippet(line)
                ),
            );
        }
    }
    Ok(reader.warnings)
}

/// Handles `[path]` and `[-path]` (`rest` is the text after `[`).
fn key_line(tree: &mut RegistryTree, reader: &mut Reader<'_>, rest: &str, line: usize) -> Current {
    let (deleting, rest) = match rest.strip_prefix('-') {
        Some(after) => (true, after),
        None => (false, rest),
    };
    // The name runs to the last `]`; whatever follows it is ignored.
    let Some(close) = rest.rfind(']') else {
        reader.warn(
            line,
            "key line has no closing ']'; skipped, and values up to the next key line with it",
        );
        return Current::Unusable {
            line,
            why: "has no closing ']'",
        };
    };
    let name = &rest[..close];
    let (root, segments) = match split_path(name, false) {
        Ok(parts) => parts,
        Err(why) => {
            reader.warn(
                line,
                format!("key [{name}]: {why}; skipped, and values up to the next key line with it"),
            );
            return Current::Unusable {
                line,
                why: "names no valid key",
            };
        }
    };
    if deleting {
        if let Err(why) = tree.delete_segments(root, &segments) {
            reader.warn(line, format!("{why}; skipped"));
        }
        return Current::Unusable {
            line,
            why: "deletes a key",
        };
    }
    tree.create_segments(root, &segments);
    Current::Key {
        root,
        segments: segments.into_iter().map(str::to_string).collect(),
    }
}

/// A parsed `"name"=data` / `@=data` line (or lines).
struct Statement {
    name: String,
    data: Option<RegValueData>,
}

/// Parses a value statement starting at `line` (already trimmed); `next` is the index of the line
/// after it. Returns the statement (None when skipped, with a warning) and the index of the next
/// unread line (past any continuation lines).
fn value_statement(
    reader: &mut Reader<'_>,
    line: &str,
    next: usize,
    line_no: usize,
) -> (Option<Statement>, usize) {
    let (name, rest) = if let Some(rest) = line.strip_prefix('@') {
        (String::new(), rest)
    } else {
        let body = line.strip_prefix('"').unwrap_or(line);
        match quoted(body) {
            Some((name, rest, _)) => (name, rest),
            None => {
                reader.warn(line_no, "value name has no closing quote; skipped");
                return (None, next);
            }
        }
    };
    let shown = if name.is_empty() {
        "@".to_string()
    } else {
        format!("{name:?}")
    };
    let Some(data) = rest.trim_start().strip_prefix('=') else {
        reader.warn(
            line_no,
            format!("value {shown}: expected '=' after the name; skipped"),
        );
        return (None, next);
    };
    let data = data.trim_start();
    let skipped = |reader: &mut Reader<'_>, why: String| {
        reader.warn(line_no, format!("value {shown}: {why}; skipped"));
        None
    };

    if let Some(rest) = data.strip_prefix('-') {
        if !blank_or_comment(rest) {
            return (
                skipped(
                    reader,
                    format!("unexpected text {:?} after '-'", snippet(rest)),
                ),
                next,
            );
        }
        return (Some(Statement { name, data: None }), next);
    }
    if let Some(body) = data.strip_prefix('"') {
        let Some((text, rest, lone_backslash)) = quoted(body) else {
            return (skipped(reader, "string has no closing quote".into()), next);
        };
        if !blank_or_comment(rest) {
            return (
                skipped(
                    reader,
                    format!("unexpected text {:?} after the string", snippet(rest)),
                ),
                next,
            );
        }
        if lone_backslash {
            reader.warn(
                line_no,
                format!(
                    "value {shown}: a backslash not followed by \\ or \" was kept as a literal backslash \
                     (only \\\\ and \\\" are escapes; write \\\\ for one backslash)"
                ),
            );
        }
        let data = RegValueData::Sz(text);
        return (
            Some(Statement {
                name,
                data: Some(data),
            }),
            next,
        );
    }
    if let Some(rest) = data.strip_prefix("dword:") {
        let rest = rest.trim_start_matches([' ', '\t']);
        let digits = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_hexdigit())
                .len();
        let (hex, after) = rest.split_at(digits);
        if hex.is_empty() || hex.len() > 8 {
            return (
                skipped(
                    reader,
                    format!("dword needs 1 to 8 hex digits, found {:?}", snippet(rest)),
                ),
                next,
            );
        }
        let after = after.trim_start();
        if after.starts_with('\\') {
            // Not a continuation: regedit drops the whole value.
            return (
                skipped(
                    reader,
                    "a '\\' after a dword is not a line continuation (regedit drops this value)"
                        .into(),
                ),
                next,
            );
        }
        if !blank_or_comment(after) {
            return (
                skipped(
                    reader,
                    format!("unexpected text {:?} after the dword", snippet(after)),
                ),
                next,
            );
        }
        let Ok(number) = u32::from_str_radix(hex, 16) else {
            return (skipped(reader, format!("bad dword {hex:?}")), next);
        };
        return (
            Some(Statement {
                name,
                data: Some(RegValueData::Dword(number)),
            }),
            next,
        );
    }
    if let Some(rest) = data.strip_prefix("hex") {
        let (kind, rest) = match rest.strip_prefix('(') {
            Some(inner) => {
                let Some((number, after)) = inner.split_once(')') else {
                    return (skipped(reader, "hex( has no closing ')'".into()), next);
                };
                match u32::from_str_radix(number, 16) {
                    Ok(kind) => (kind, after),
                    Err(_) => {
                        return (
                            skipped(reader, format!("bad value type hex({number})")),
                            next,
                        )
                    }
                }
            }
            None => (REG_BINARY, rest),
        };
        let Some(list) = rest.strip_prefix(':') else {
            return (skipped(reader, "expected ':' after hex".into()), next);
        };
        return match hex_list(reader, list, next, line_no) {
            Ok((bytes, next)) => {
                let data = RegValueData::from_hex(kind, bytes, reader.strings);
                (
                    Some(Statement {
                        name,
                        data: Some(data),
                    }),
                    next,
                )
            }
            Err((why, next)) => (skipped(reader, why), next),
        };
    }
    (
        skipped(
            reader,
            format!(
                "unrecognised data {:?} (expected \"text\", dword:, hex:, hex(N): or -)",
                snippet(data)
            ),
        ),
        next,
    )
}

/// Reads a comma-separated byte list that may continue onto following lines after `,\`.
/// Returns the bytes and the index of the next unread line, or the reason and the index to resume at.
fn hex_list(
    reader: &Reader<'_>,
    first: &str,
    mut next: usize,
    start_line: usize,
) -> Result<(Vec<u8>, usize), (String, usize)> {
    let mut bytes = Vec::new();
    let mut rest = first;
    let mut expect_byte = true;
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        if blank_or_comment(rest) {
            return Ok((bytes, next));
        }
        if expect_byte {
            if let Some(after) = rest.strip_prefix('\\') {
                if !blank_or_comment(after) {
                    let why = format!(
                        "unexpected text {:?} after the continuation '\\'",
                        snippet(after)
                    );
                    return Err((why, skip_continuations(reader, next)));
                }
                // Continuation: skip blank lines; a line that starts a new statement ends the list.
                while next < reader.lines.len() && reader.lines[next].trim().is_empty() {
                    next += 1;
                }
                let Some(line) = reader.lines.get(next) else {
                    return Err((
                        "the hex list continues past the end of the file".into(),
                        next,
                    ));
                };
                let trimmed = line.trim_start_matches([' ', '\t']);
                if trimmed.starts_with(['"', '@', '[']) {
                    let why = format!(
                        "the hex list ends with ',\\' but line {} starts a new statement",
                        next + 1
                    );
                    return Err((why, next));
                }
                rest = trimmed;
                next += 1;
                continue;
            }
            let digits = rest.len()
                - rest
                    .trim_start_matches(|c: char| c.is_ascii_hexdigit())
                    .len();
            if digits == 0 || digits > 2 {
                let why = format!(
                    "invalid hex byte list at {:?}{}",
                    snippet(rest),
                    on_line(next, start_line)
                );
                return Err((why, skip_continuations(reader, next)));
            }
            let (pair, after) = rest.split_at(digits);
            match u8::from_str_radix(pair, 16) {
                Ok(byte) => bytes.push(byte),
                Err(_) => {
                    return Err((
                        format!("bad hex byte {pair:?}"),
                        skip_continuations(reader, next),
                    ))
                }
            }
            rest = after;
            expect_byte = false;
        } else if let Some(after) = rest.strip_prefix(',') {
            rest = after;
            expect_byte = true;
        } else {
            let why = format!(
                "invalid hex byte list at {:?}{}",
                snippet(rest),
                on_line(next, start_line)
            );
            return Err((why, skip_continuations(reader, next)));
        }
    }
}

/// ` (on line N)` when a problem is on a continuation line rather than where the statement starts;
/// `next` is the index of the next unread line, i.e. the 1-based number of the line being read.
fn on_line(next: usize, start_line: usize) -> String {
    if next == start_line {
        String::new()
    } else {
        format!(" (on line {next})")
    }
}

/// After a bad hex list, also skip the lines it continued onto, so they don't each become a warning.
fn skip_continuations(reader: &Reader<'_>, mut next: usize) -> usize {
    let continues = |line: &str| {
        line.rfind('\\')
            .is_some_and(|at| blank_or_comment(&line[at + 1..]))
    };
    let mut previous = next
        .checked_sub(1)
        .and_then(|i| reader.lines.get(i))
        .copied();
    while let Some(line) = previous {
        if !continues(line) {
            break;
        }
        let Some(following) = reader.lines.get(next) else {
            break;
        };
        if following.trim_start().starts_with(['"', '@', '[']) {
            break;
        }
        previous = Some(following);
        next += 1;
    }
    next
}

/// Applies one parsed statement to the current key.
fn assign(
    tree: &mut RegistryTree,
    reader: &mut Reader<'_>,
    current: &Current,
    statement: Statement,
    line: usize,
) {
    let shown = if statement.name.is_empty() {
        "@".to_string()
    } else {
        format!("{:?}", statement.name)
    };
    match current {
        Current::NoKey => reader.warn(
            line,
            format!("value {shown} comes before any [key] line; skipped"),
        ),
        Current::Unusable {
            line: key_line,
            why,
        } => reader.warn(
            line,
            format!("value {shown} has no key: the key line at line {key_line} {why}; skipped"),
        ),
        Current::Key { root, segments } => {
            let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
            match statement.data {
                Some(data) => {
                    let origin = Origin {
                        file: reader.file.to_path_buf(),
                        line,
                    };
                    tree.set_in(root, &segments, &statement.name, data, Some(origin));
                }
                None => {
                    tree.delete_in(root, &segments, &statement.name);
                }
            }
        }
    }
}

/// Reads a quoted string body (after the opening quote): `\\` and `\"` are the only escapes, any
/// other backslash is kept. Returns the text, what follows the closing quote, and whether a lone
/// backslash was seen; None when the quote is not closed on this line.
fn quoted(body: &str) -> Option<(String, &str, bool)> {
    let mut text = String::new();
    let mut lone_backslash = false;
    let mut chars = body.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((text, &body[at + 1..], lone_backslash)),
            '\\' => match body[at + 1..].chars().next() {
                Some(escaped @ ('\\' | '"')) => {
                    text.push(escaped);
                    chars.next();
                }
                _ => {
                    text.push('\\');
                    lone_backslash = true;
                }
            },
            other => text.push(other),
        }
    }
    None
}

fn blank_or_comment(rest: &str) -> bool {
    let rest = rest.trim_start();
    rest.is_empty() || rest.starts_with(';')
}

/// At most 40 characters of `text`, for warnings.
fn snippet(text: &str) -> String {
    let mut cut: String = text.chars().take(40).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}
