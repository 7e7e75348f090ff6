//! A small parser for the subset of TOML the plugin's configuration uses.
//!
//! Written by hand for one reason: firmware size. The plugin ships as a static
//! binary in the shelf manager's flash with a size budget (`cross/versions.env`);
//! the `toml` crate and the serde deserialization it instantiates were about
//! 170 KB of code, the largest part of the binary, for a file of a few dozen
//! lines. The blade agent, which has no such budget, keeps the `toml` crate.
//!
//! Supported, exactly what the plugin's configuration needs:
//! - comments (`# ...`), blank lines, LF or CRLF line ends;
//! - `[table]` and `[[array-of-tables]]` headers with one bare or quoted name;
//! - `key = value` with a bare (`A-Za-z0-9_-`) or quoted key;
//! - integers: decimal with optional sign, `0x` hex, `_` between digits (64-bit);
//! - basic strings (`"..."`, escapes `\b \t \n \f \r \" \\ \e \uXXXX \UXXXXXXXX`)
//!   and literal strings (`'...'`);
//! - booleans; arrays of these values (multi-line, comments, trailing comma).
//!
//! Everything else TOML has (floats, dates and times, multi-line strings,
//! dotted keys, dotted table names, inline tables, octal and binary integers)
//! is refused with an error naming the line, as are duplicate keys and tables.
//! No input panics; array nesting is limited to [`MAX_DEPTH`].
//!
//! The typed accessors of [`Table`] give errors in the wording of the serde
//! deserializer the configuration used before (`unknown field`, `invalid type`,
//! `invalid value`, `missing field`, `unknown variant`), with the line.

#![deny(clippy::indexing_slicing)]

use std::fmt::Write as _;

/// Deepest nesting of arrays accepted.
pub(crate) const MAX_DEPTH: usize = 16;

/// An error with the 1-based line it refers to (`None`: the whole file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Error {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

fn error<T>(line: usize, message: impl Into<String>) -> Result<T, Error> {
    Err(Error {
        line: Some(line),
        message: message.into(),
    })
}

/// A value with the line it was written on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct At<T> {
    /// The value.
    pub value: T,
    /// 1-based line of its key.
    pub line: usize,
}

/// A parsed value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    Array(Vec<Value>),
    Table(Table),
    Tables(Vec<Table>),
}

impl Value {
    /// Describes the value for an `invalid type` message.
    fn describe(&self) -> String {
        match self {
            Self::Str(s) => format!("string {s:?}"),
            Self::Int(i) => format!("integer `{i}`"),
            Self::Bool(b) => format!("boolean `{b}`"),
            Self::Array(a) => format!("array of {} values", a.len()),
            Self::Table(_) => "table".into(),
            Self::Tables(_) => "array of tables".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    key: String,
    line: usize,
    value: Value,
}

/// A table: the document's root, a `[table]` or one `[[array-of-tables]]` element.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Table {
    /// Line of its header (`None` for the root).
    pub line: Option<usize>,
    entries: Vec<Entry>,
}

impl Table {
    fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    fn invalid_type<T>(e: &Entry, expected: &str) -> Result<T, Error> {
        error(
            e.line,
            format!(
                "invalid type: {}, expected {expected} (key `{}`)",
                e.value.describe(),
                e.key
            ),
        )
    }

    /// Refuses the first key (in file order) that is not in `allowed`.
    pub(crate) fn only(&self, allowed: &[&str]) -> Result<(), Error> {
        for e in &self.entries {
            if !allowed.contains(&e.key.as_str()) {
                let mut m = format!("unknown field `{}`, expected ", e.key);
                for (i, k) in allowed.iter().enumerate() {
                    let sep = match i {
                        0 if allowed.len() > 1 => "one of ",
                        0 => "",
                        _ => ", ",
                    };
                    let _ = write!(m, "{sep}`{k}`");
                }
                if allowed.is_empty() {
                    m.push_str("no keys here");
                }
                return error(e.line, m);
            }
        }
        Ok(())
    }

    /// The error for a required key that is absent.
    pub(crate) fn missing(&self, key: &str) -> Error {
        Error {
            line: self.line,
            message: format!("missing field `{key}`"),
        }
    }

    /// An integer key converted to `T`, or `None` when absent.
    pub(crate) fn int<T: TryFrom<i64>>(&self, key: &str) -> Result<Option<At<T>>, Error> {
        let Some(e) = self.entry(key) else {
            return Ok(None);
        };
        let ty = std::any::type_name::<T>();
        match e.value {
            Value::Int(i) => match T::try_from(i) {
                Ok(value) => Ok(Some(At {
                    value,
                    line: e.line,
                })),
                Err(_) => error(
                    e.line,
                    format!("invalid value: integer `{i}`, expected {ty} (key `{key}`)"),
                ),
            },
            _ => Self::invalid_type(e, ty),
        }
    }

    /// A string key, or `None` when absent.
    pub(crate) fn string(&self, key: &str) -> Result<Option<At<String>>, Error> {
        match self.entry(key) {
            None => Ok(None),
            Some(Entry {
                value: Value::Str(s),
                line,
                ..
            }) => Ok(Some(At {
                value: s.clone(),
                line: *line,
            })),
            Some(e) => Self::invalid_type(e, "a string"),
        }
    }

    /// A boolean key, or `None` when absent.
    pub(crate) fn boolean(&self, key: &str) -> Result<Option<At<bool>>, Error> {
        match self.entry(key) {
            None => Ok(None),
            Some(Entry {
                value: Value::Bool(b),
                line,
                ..
            }) => Ok(Some(At {
                value: *b,
                line: *line,
            })),
            Some(e) => Self::invalid_type(e, "a boolean"),
        }
    }

    /// A string key that must be one of `variants`: its index, or `None` when absent.
    pub(crate) fn variant(&self, key: &str, variants: &[&str]) -> Result<Option<At<usize>>, Error> {
        let Some(s) = self.string(key)? else {
            return Ok(None);
        };
        match variants.iter().position(|v| *v == s.value) {
            Some(value) => Ok(Some(At {
                value,
                line: s.line,
            })),
            None => {
                let mut m = format!("unknown variant `{}`, expected one of ", s.value);
                for (i, v) in variants.iter().enumerate() {
                    let _ = write!(m, "{}`{v}`", if i == 0 { "" } else { ", " });
                }
                error(s.line, m)
            }
        }
    }

    /// A `[key]` table, or `None` when absent.
    pub(crate) fn table(&self, key: &str) -> Result<Option<&Table>, Error> {
        match self.entry(key) {
            None => Ok(None),
            Some(Entry {
                value: Value::Table(t),
                ..
            }) => Ok(Some(t)),
            Some(e) => Self::invalid_type(e, &format!("a table ([{key}])")),
        }
    }

    /// The `[[key]]` tables (empty when absent).
    pub(crate) fn tables(&self, key: &str) -> Result<&[Table], Error> {
        match self.entry(key) {
            None => Ok(&[]),
            Some(Entry {
                value: Value::Tables(t),
                ..
            }) => Ok(t),
            Some(e) => Self::invalid_type(e, &format!("an array of tables ([[{key}]])")),
        }
    }
}

/// Parses `text` into its root table.
pub(crate) fn parse(text: &str) -> Result<Table, Error> {
    let mut p = Parser {
        s: text.strip_prefix('\u{feff}').unwrap_or(text).as_bytes(),
        pos: 0,
        line: 1,
    };
    p.document()
}

/// The table being filled: the root, or the last header's table.
struct Open {
    name: String,
    array: bool,
    table: Table,
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    line: usize,
}

fn is_bare(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn is_delimiter(b: Option<u8>) -> bool {
    matches!(
        b,
        None | Some(b' ' | b'\t' | b'\n' | b'\r' | b'#' | b',' | b']' | b'}')
    )
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.s.get(self.pos.saturating_add(ahead)).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        if b == b'\n' {
            self.line += 1;
        }
        Some(b)
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// Skips a comment up to (not including) the line end.
    fn skip_comment(&mut self) -> Result<(), Error> {
        if self.peek() != Some(b'#') {
            return Ok(());
        }
        while let Some(b) = self.peek() {
            match b {
                b'\n' => break,
                b'\r' if self.peek_at(1) == Some(b'\n') => break,
                b'\t' => {}
                0..=0x1f | 0x7f => {
                    return error(self.line, "control character in a comment");
                }
                _ => {}
            }
            self.pos += 1;
        }
        Ok(())
    }

    /// Consumes a line end (LF or CRLF); true when one was there.
    fn newline(&mut self) -> Result<bool, Error> {
        match self.peek() {
            Some(b'\n') => {
                self.bump();
                Ok(true)
            }
            Some(b'\r') if self.peek_at(1) == Some(b'\n') => {
                self.pos += 1;
                self.bump();
                Ok(true)
            }
            Some(b'\r') => error(self.line, "carriage return without a line feed"),
            _ => Ok(false),
        }
    }

    /// After a key/value pair or a header: only blanks and a comment may follow.
    fn end_of_line(&mut self, after: &str) -> Result<(), Error> {
        self.skip_ws();
        self.skip_comment()?;
        if self.newline()? || self.peek().is_none() {
            Ok(())
        } else {
            error(self.line, format!("unexpected text after {after}"))
        }
    }

    fn document(&mut self) -> Result<Table, Error> {
        let mut root = Table::default();
        let mut open: Option<Open> = None;
        loop {
            self.skip_ws();
            match self.peek() {
                None => break,
                Some(b'#') => self.skip_comment()?,
                Some(b'\n' | b'\r') => {
                    self.newline()?;
                }
                Some(b'[') => {
                    if let Some(o) = open.take() {
                        close(&mut root, o);
                    }
                    open = Some(self.header(&root)?);
                }
                Some(_) => {
                    let line = self.line;
                    let key = self.key()?;
                    self.skip_ws();
                    match self.peek() {
                        Some(b'=') => self.pos += 1,
                        Some(b'.') => return error(line, "dotted keys are not supported"),
                        _ => return error(line, format!("expected `=` after key `{key}`")),
                    }
                    self.skip_ws();
                    let value = self.value(0)?;
                    self.end_of_line("a value")?;
                    let table = match open.as_mut() {
                        Some(o) => &mut o.table,
                        None => &mut root,
                    };
                    if table.entry(&key).is_some() {
                        return error(line, format!("duplicate key `{key}`"));
                    }
                    table.entries.push(Entry { key, line, value });
                }
            }
        }
        if let Some(o) = open.take() {
            close(&mut root, o);
        }
        Ok(root)
    }

    /// `[name]` or `[[name]]`; checks that it does not clash with the root's keys.
    fn header(&mut self, root: &Table) -> Result<Open, Error> {
        let line = self.line;
        self.pos += 1;
        let array = self.peek() == Some(b'[');
        if array {
            self.pos += 1;
        }
        self.skip_ws();
        let name = self.key()?;
        self.skip_ws();
        if self.peek() == Some(b'.') {
            return error(line, "dotted table names are not supported");
        }
        let close = if array { "]]" } else { "]" };
        for _ in 0..close.len() {
            if self.peek() != Some(b']') {
                return error(
                    line,
                    format!("expected `{close}` to close the table header"),
                );
            }
            self.pos += 1;
        }
        self.end_of_line("a table header")?;
        match (root.entry(&name), array) {
            (None, _)
            | (
                Some(Entry {
                    value: Value::Tables(_),
                    ..
                }),
                true,
            ) => {}
            (Some(e), false) if matches!(e.value, Value::Table(_)) => {
                return error(line, format!("duplicate table `[{name}]`"));
            }
            (Some(e), _) => {
                return error(
                    line,
                    format!(
                        "`{name}` is already defined (line {}) as {}",
                        e.line,
                        e.value.describe()
                    ),
                );
            }
        }
        Ok(Open {
            name,
            array,
            table: Table {
                line: Some(line),
                entries: Vec::new(),
            },
        })
    }

    /// A bare or quoted key.
    fn key(&mut self) -> Result<String, Error> {
        match self.peek() {
            Some(b'"') => self.basic_string(),
            Some(b'\'') => self.literal_string(),
            Some(b) if is_bare(b) => {
                let start = self.pos;
                while self.peek().is_some_and(is_bare) {
                    self.pos += 1;
                }
                Ok(self.text(start, self.pos))
            }
            _ => error(self.line, "expected a key"),
        }
    }

    /// The text between two positions (ASCII by construction; lossy otherwise).
    fn text(&self, start: usize, end: usize) -> String {
        String::from_utf8_lossy(self.s.get(start..end).unwrap_or_default()).into_owned()
    }

    fn value(&mut self, depth: usize) -> Result<Value, Error> {
        match self.peek() {
            Some(b'"') => {
                if self.peek_at(1) == Some(b'"') && self.peek_at(2) == Some(b'"') {
                    return error(self.line, "multi-line strings are not supported");
                }
                self.basic_string().map(Value::Str)
            }
            Some(b'\'') => {
                if self.peek_at(1) == Some(b'\'') && self.peek_at(2) == Some(b'\'') {
                    return error(self.line, "multi-line strings are not supported");
                }
                self.literal_string().map(Value::Str)
            }
            Some(b'[') => self.array(depth),
            Some(b'{') => error(self.line, "inline tables are not supported"),
            _ => self.scalar(),
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, Error> {
        let line = self.line;
        if depth >= MAX_DEPTH {
            return error(line, format!("arrays nested deeper than {MAX_DEPTH}"));
        }
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.blanks()?;
            if self.peek() == Some(b']') {
                self.pos += 1;
                return Ok(Value::Array(items));
            }
            if self.peek().is_none() {
                return error(line, "unterminated array");
            }
            items.push(self.value(depth + 1)?);
            self.blanks()?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {}
                None => return error(line, "unterminated array"),
                _ => return error(self.line, "expected `,` or `]` in an array"),
            }
        }
    }

    /// Blanks, comments and line ends inside an array.
    fn blanks(&mut self) -> Result<(), Error> {
        loop {
            self.skip_ws();
            self.skip_comment()?;
            if !self.newline()? {
                return Ok(());
            }
        }
    }

    fn basic_string(&mut self) -> Result<String, Error> {
        let line = self.line;
        self.pos += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return error(line, "unterminated string");
            };
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(e) = self.peek() else {
                        return error(line, "unterminated string");
                    };
                    self.pos += 1;
                    let c = match e {
                        b'b' => '\u{8}',
                        b't' => '\t',
                        b'n' => '\n',
                        b'f' => '\u{c}',
                        b'r' => '\r',
                        b'e' => '\u{1b}',
                        b'"' => '"',
                        b'\\' => '\\',
                        b'u' => self.unicode(4)?,
                        b'U' => self.unicode(8)?,
                        _ => {
                            return error(
                                line,
                                format!("invalid escape `\\{}` in a string", e.escape_ascii()),
                            )
                        }
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                b'\n' | b'\r' => return error(line, "unterminated string (line end)"),
                b'\t' => out.push(b),
                0..=0x1f | 0x7f => return error(line, "control character in a string"),
                _ => out.push(b),
            }
        }
        String::from_utf8(out).or_else(|_| error(line, "string is not valid UTF-8"))
    }

    /// `n` hex digits of a `\u`/`\U` escape.
    fn unicode(&mut self, n: usize) -> Result<char, Error> {
        let mut v: u32 = 0;
        for _ in 0..n {
            let d = self.peek().and_then(|b| char::from(b).to_digit(16));
            let Some(d) = d else {
                return error(self.line, format!("escape needs {n} hex digits"));
            };
            self.pos += 1;
            v = v.saturating_mul(16).saturating_add(d);
        }
        char::from_u32(v).map_or_else(
            || {
                error(
                    self.line,
                    format!("escape {v:#x} is not a Unicode scalar value"),
                )
            },
            Ok,
        )
    }

    fn literal_string(&mut self) -> Result<String, Error> {
        let line = self.line;
        self.pos += 1;
        let start = self.pos;
        loop {
            match self.peek() {
                None | Some(b'\n' | b'\r') => return error(line, "unterminated string"),
                Some(b'\'') => break,
                Some(b'\t') => {}
                Some(0..=0x1f | 0x7f) => return error(line, "control character in a string"),
                Some(_) => {}
            }
            self.pos += 1;
        }
        let s = std::str::from_utf8(self.s.get(start..self.pos).unwrap_or_default())
            .map(str::to_owned)
            .or_else(|_| error(line, "string is not valid UTF-8"));
        self.pos += 1;
        s
    }

    /// A boolean or an integer; other bare values are named and refused.
    fn scalar(&mut self) -> Result<Value, Error> {
        let line = self.line;
        let start = self.pos;
        while !is_delimiter(self.peek()) {
            self.pos += 1;
        }
        let token = self.text(start, self.pos);
        match token.as_str() {
            "" => return error(line, "expected a value"),
            "true" => return Ok(Value::Bool(true)),
            "false" => return Ok(Value::Bool(false)),
            _ => {}
        }
        integer(&token).map(Value::Int).map_err(|message| Error {
            line: Some(line),
            message,
        })
    }
}

/// Moves a finished table into the root (clashes were refused at its header).
fn close(root: &mut Table, o: Open) {
    if o.array {
        if let Some(Entry {
            value: Value::Tables(v),
            ..
        }) = root.entries.iter_mut().find(|e| e.key == o.name)
        {
            v.push(o.table);
            return;
        }
        let line = o.table.line.unwrap_or(0);
        root.entries.push(Entry {
            key: o.name,
            line,
            value: Value::Tables(vec![o.table]),
        });
    } else {
        let line = o.table.line.unwrap_or(0);
        root.entries.push(Entry {
            key: o.name,
            line,
            value: Value::Table(o.table),
        });
    }
}

/// Parses an integer token; the error names what the token is instead.
fn integer(token: &str) -> Result<i64, String> {
    let unsupported = |what: &str| Err(format!("{what} are not supported (value `{token}`)"));
    let (negative, body) = match token.as_bytes().first() {
        Some(b'-') => (true, token.get(1..).unwrap_or_default()),
        Some(b'+') => (false, token.get(1..).unwrap_or_default()),
        _ => (false, token),
    };
    let date_like = token.len() >= 10
        && token.as_bytes().get(4) == Some(&b'-')
        && token.bytes().take(4).all(|b| b.is_ascii_digit());
    if token.contains(':') || date_like {
        return unsupported("dates and times");
    }
    if matches!(body, "inf" | "nan") {
        return unsupported("floating-point numbers");
    }
    let (radix, digits) = if let Some(hex) = body.strip_prefix("0x") {
        if body.len() != token.len() {
            return Err(format!(
                "a hex integer cannot have a sign (value `{token}`)"
            ));
        }
        (16, hex)
    } else if body.starts_with("0o") || body.starts_with("0b") {
        return unsupported("octal and binary integers");
    } else {
        if body.contains(['.', 'e', 'E']) && body.bytes().next().is_some_and(|b| b.is_ascii_digit())
        {
            return unsupported("floating-point numbers");
        }
        if body.len() > 1 && body.starts_with('0') {
            return Err(format!("leading zeros are not allowed (value `{token}`)"));
        }
        (10, body)
    };
    let invalid = || {
        Err(format!(
            "invalid value `{token}`: expected an integer, a boolean, a quoted string or an array"
        ))
    };
    let mut magnitude: u64 = 0;
    let mut previous_digit = false;
    for b in digits.bytes() {
        if b == b'_' {
            if !previous_digit {
                return invalid();
            }
            previous_digit = false;
            continue;
        }
        let Some(d) = char::from(b).to_digit(radix) else {
            return invalid();
        };
        previous_digit = true;
        magnitude = match magnitude
            .checked_mul(u64::from(radix))
            .and_then(|m| m.checked_add(u64::from(d)))
        {
            Some(m) => m,
            None => return Err(format!("integer `{token}` does not fit in 64 bits")),
        };
    }
    if !previous_digit {
        return invalid();
    }
    let value = if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    };
    value.ok_or_else(|| format!("integer `{token}` does not fit in 64 bits"))
}

#[cfg(test)]
mod test;
