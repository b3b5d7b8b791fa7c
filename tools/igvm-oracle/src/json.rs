// SPDX-License-Identifier: GPL-2.0-or-later
//
// The oracle's JSON output: string escaping, hex, and a small value tree for
// answers with nested structure (the corim subcommand).  No serde_json: the
// oracle's dependencies are the igvm crate's own, nothing more.

use std::fmt::Write as _;

pub fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A JSON value; objects keep their fields in the order given.
pub enum J {
    Null,
    Bool(bool),
    Int(i128),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(&'static str, J)>),
}

impl J {
    pub fn write(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Int(n) => {
                let _ = write!(out, "{n}");
            }
            J::Str(s) => json_str(out, s),
            J::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            J::Obj(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    json_str(out, key);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }

    pub fn line(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    pub fn str(s: impl Into<String>) -> J {
        J::Str(s.into())
    }

    pub fn hex(bytes: &[u8]) -> J {
        J::Str(hex(bytes))
    }

    pub fn opt_str(s: Option<impl Into<String>>) -> J {
        s.map_or(J::Null, |s| J::Str(s.into()))
    }

    /// Append a field to an object (no-op on other values).
    pub fn push(&mut self, key: &'static str, value: J) {
        if let J::Obj(fields) = self {
            fields.push((key, value));
        }
    }
}
