//! BuildKit's AST dump format (`Node.Dump` in its parser), so rbuild's parse
//! can be compared byte for byte with BuildKit's golden files:
//! `(keyword ["--flag"] "arg" "arg")`, one instruction per line.

use crate::node::{Args, Node};

/// Dumps instructions as BuildKit does, without the final newline.
pub fn dump(nodes: &[Node]) -> String {
    let lines: Vec<String> = nodes
        .iter()
        .map(|n| format!("({})", dump_node(n)))
        .collect();
    lines.join("\n").trim().to_string()
}

fn dump_node(node: &Node) -> String {
    let mut out = node.keyword.value.to_lowercase();
    if !node.flags.is_empty() {
        let flags: Vec<String> = node.flags.iter().map(|f| go_quote(&f.value)).collect();
        out.push_str(&format!(" [{}]", flags.join(" ")));
    }
    match &node.args {
        Args::Words(words) if words.is_empty() && !is_known_keyword(&node.name()) => {
            // BuildKit keeps unknown instructions with one empty argument.
            out.push_str(" \"\"");
        }
        Args::Words(words) => {
            for w in words {
                out.push(' ');
                out.push_str(&go_quote(&w.value));
            }
        }
        Args::KeyValues(pairs) => {
            for kv in pairs {
                let sep = if kv.legacy { "" } else { "=" };
                for part in [kv.key.value.as_str(), kv.value.value.as_str(), sep] {
                    out.push(' ');
                    out.push_str(&go_quote(part));
                }
            }
        }
        Args::Nested(child) => {
            out.push_str(&format!(" ({})", dump_node(child)));
        }
    }
    out.trim().to_string()
}

pub(crate) fn is_known_keyword(lower: &str) -> bool {
    crate::raw::KEYWORDS.contains(&lower)
}

/// Go's `strconv.Quote`: printable characters stay as they are, the rest are
/// escaped as `\n`, `\xNN`, `\uNNNN` or `\UNNNNNNNN`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if go_is_print(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `unicode.IsPrint` (letters, marks, numbers,
/// punctuation, symbols and the ASCII space) without a Unicode table:
/// controls, non-ASCII spaces, format characters, private-use and
/// noncharacters are not printable.
fn go_is_print(c: char) -> bool {
    let u = c as u32;
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let format_or_private = matches!(u,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x08E2 | 0x180E
        | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB
        | 0xE000..=0xF8FF | 0xFDD0..=0xFDEF | 0xF0000..=0x10FFFF | 0xE0001 | 0xE0020..=0xE007F);
    !format_or_private && (u & 0xFFFE) != 0xFFFE
}

#[cfg(test)]
mod tests {
    use super::go_quote;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(go_quote("\u{0}\t\n"), r#""\x00\t\n""#);
        assert_eq!(go_quote("♥☃ é"), "\"♥☃ é\"");
        assert_eq!(go_quote("\u{a0}\u{feff}"), r#""\u00a0\ufeff""#);
        assert_eq!(go_quote("\u{7f}"), r#""\x7f""#);
    }
}
