//! Shell patterns for `${VAR#p}`, `${VAR%p}` and `${VAR/p/r}`.
//!
//! BuildKit turns the pattern into a Go regular expression: `*` becomes
//! `.*` (or `.*?` for the shortest forms), `?` becomes `.`, every other
//! character is literal (brackets included: there are no `[...]` classes),
//! and a backslash may only escape `*`, `?`, `\`, `}` or `/`. Go's `.` does
//! not match a newline, so neither do `*` and `?` here.
//!
//! Instead of a regex engine this module simulates the pattern directly. For
//! patterns of this shape Go's leftmost-first matching picks the leftmost
//! start and then the longest end (greedy `.*`) or the shortest end (lazy
//! `.*?`), so that is what [`Pattern::find`] computes, in one pass over the
//! value.

/// A pattern element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// `*`: any run of characters other than newline.
    AnyRun,
    /// `?`: one character other than newline.
    AnyChar,
    /// A character matching itself.
    Literal(char),
}

/// A parsed shell pattern.
#[derive(Debug)]
struct Pattern {
    tokens: Vec<Token>,
}

impl Pattern {
    /// Parses `pattern` as BuildKit does; the error says what is wrong.
    fn parse(pattern: &str) -> Result<Self, String> {
        // BuildKit reads the pattern with Go's text/scanner, which silently
        // skips a byte-order mark at the very start.
        let pattern = pattern.strip_prefix('\u{FEFF}').unwrap_or(pattern);
        let mut chars = pattern.chars().peekable();
        let mut tokens = Vec::new();
        while let Some(c) = chars.next() {
            let token = match c {
                '*' => Token::AnyRun,
                '?' => Token::AnyChar,
                // `\}` and `\/` only stop the character from ending the
                // `${...}` or the pattern; the backslash is dropped and the
                // next round reads the character as a literal.
                '\\' if matches!(chars.peek(), Some('}' | '/')) => continue,
                '\\' => match chars.next() {
                    Some(e @ ('*' | '?' | '\\')) => Token::Literal(e),
                    Some(e) => {
                        return Err(format!(
                        "invalid escape '\\{e}': only \\*, \\?, \\\\, \\}} and \\/ may be escaped"
                    ))
                    }
                    None => return Err("the pattern ends with an unescaped '\\'".to_string()),
                },
                c => Token::Literal(c),
            };
            tokens.push(token);
        }
        Ok(Pattern { tokens })
    }

    /// Finds the match whose start is leftmost (at or after `from`; exactly
    /// `from` when `anchored`) and, for that start, whose end is the longest
    /// or the shortest. Positions are indexes into `hay`.
    fn find(
        &self,
        hay: &[char],
        from: usize,
        anchored: bool,
        longest: bool,
    ) -> Option<(usize, usize)> {
        if from > hay.len() {
            return None;
        }
        let n = self.tokens.len();
        // `cur[i]` is the earliest start of a partial match that has matched
        // the tokens before `i` and ends at `pos`; `cur[n]` is a full match.
        // For a given `i` and `pos`, what can follow does not depend on the
        // start, so keeping only the earliest start loses nothing.
        let mut cur: Vec<Option<usize>> = vec![None; n + 1];
        let mut next: Vec<Option<usize>> = vec![None; n + 1];
        let mut best: Option<(usize, usize)> = None;
        let mut pos = from;
        loop {
            if best.is_none() && (!anchored || pos == from) {
                keep_earliest(&mut cur, 0, pos);
            }
            // A `*` may match nothing: whatever waits before it also waits
            // after it. Tokens are visited in order, so runs of `*` chain.
            for (i, token) in self.tokens.iter().enumerate() {
                if let (Token::AnyRun, Some(start)) = (token, cur.get(i).copied().flatten()) {
                    keep_earliest(&mut cur, i + 1, start);
                }
            }
            if let Some(start) = cur.get(n).copied().flatten() {
                let better = match best {
                    None => true,
                    Some((bs, be)) => start < bs || (start == bs && longest && pos > be),
                };
                if better {
                    best = Some((start, pos));
                }
            }
            if let Some((bs, _)) = best {
                // Only an earlier start, or (for the longest match) the same
                // start, can still beat the match we have.
                for slot in cur.iter_mut() {
                    if slot.is_some_and(|s| s > bs || (s == bs && !longest)) {
                        *slot = None;
                    }
                }
            }
            let Some(&c) = hay.get(pos) else { break };
            if (best.is_some() || anchored) && cur.iter().all(Option::is_none) {
                break;
            }
            next.fill(None);
            for (i, token) in self.tokens.iter().enumerate() {
                let Some(start) = cur.get(i).copied().flatten() else {
                    continue;
                };
                match *token {
                    Token::AnyRun if c != '\n' => keep_earliest(&mut next, i, start),
                    Token::AnyChar if c != '\n' => keep_earliest(&mut next, i + 1, start),
                    Token::Literal(l) if l == c => keep_earliest(&mut next, i + 1, start),
                    _ => {}
                }
            }
            std::mem::swap(&mut cur, &mut next);
            pos += 1;
        }
        best
    }
}

/// Records `start` at `slots[i]` unless an earlier start is already there.
fn keep_earliest(slots: &mut [Option<usize>], i: usize, start: usize) {
    if let Some(slot) = slots.get_mut(i) {
        if slot.is_none_or(|s| start < s) {
            *slot = Some(start);
        }
    }
}

/// `hay[range]` as a string (empty if the range does not fit).
fn collect(hay: &[char], range: std::ops::Range<usize>) -> String {
    hay.get(range).unwrap_or_default().iter().collect()
}

/// `${VAR#pattern}` (`longest == false`) and `${VAR##pattern}`: removes the
/// shortest or longest prefix of `value` matching `pattern`.
pub(super) fn trim_prefix(pattern: &str, value: &str, longest: bool) -> Result<String, String> {
    let pattern = Pattern::parse(pattern)?;
    let hay: Vec<char> = value.chars().collect();
    Ok(match pattern.find(&hay, 0, true, longest) {
        Some((_, end)) => collect(&hay, end..hay.len()),
        None => value.to_string(),
    })
}

/// `${VAR%pattern}` and `${VAR%%pattern}`: removes the shortest or longest
/// suffix of `value` matching `pattern`.
///
/// Like BuildKit, this reverses both the value and the pattern (keeping each
/// backslash before the character it escapes) and trims a prefix. The
/// pattern is parsed only after reversing, so its errors are the reversed
/// pattern's: that is what BuildKit reports too.
pub(super) fn trim_suffix(pattern: &str, value: &str, longest: bool) -> Result<String, String> {
    let reversed_value: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed_value, longest)?;
    Ok(trimmed.chars().rev().collect())
}

/// Reverses a pattern, keeping each `\x` pair in order (`a\*c` -> `c\*a`).
/// A lone backslash at the end stays a single character.
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut units: Vec<&[char]> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let width = if chars.get(i) == Some(&'\\') && i + 1 < chars.len() {
            2
        } else {
            1
        };
        if let Some(unit) = chars.get(i..i + width) {
            units.push(unit);
        }
        i += width;
    }
    units.iter().rev().flat_map(|unit| unit.iter()).collect()
}

/// `${VAR/pattern/replacement}` (`all == false`) and
/// `${VAR//pattern/replacement}`: replaces the leftmost-longest match, or
/// every match.
///
/// Two Go details are kept because BuildKit's output depends on them:
/// replacing all matches goes through `Regexp.ReplaceAllString`, which
/// expands `$0`/`${0}` in the replacement to the matched text (other `$name`
/// references to nothing, `$$` to `$`), while the single replacement inserts
/// the replacement literally; and empty matches follow Go's rules (never
/// right after a previous match, always advancing by one character).
pub(super) fn replace(
    pattern: &str,
    value: &str,
    replacement: &str,
    all: bool,
) -> Result<String, String> {
    let pattern = Pattern::parse(pattern)?;
    let hay: Vec<char> = value.chars().collect();
    if !all {
        return Ok(match pattern.find(&hay, 0, false, true) {
            Some((start, end)) => {
                collect(&hay, 0..start) + replacement + &collect(&hay, end..hay.len())
            }
            None => value.to_string(),
        });
    }
    let mut out = String::new();
    let mut last_end = 0;
    let mut search = 0;
    while search <= hay.len() {
        let Some((start, end)) = pattern.find(&hay, search, false, true) else {
            break;
        };
        out.push_str(&collect(&hay, last_end..start));
        // An empty match directly after the previous match is not replaced
        // (otherwise `x*` would replace twice around every run of x).
        if end > last_end || start == 0 {
            expand_template(&mut out, replacement, &collect(&hay, start..end));
        }
        last_end = end;
        search = if end == search { search + 1 } else { end };
    }
    out.push_str(&collect(&hay, last_end..hay.len()));
    Ok(out)
}

/// Appends `template` with Go's `Regexp.Expand` rules for a pattern whose
/// only group is the whole match (group 0).
fn expand_template(out: &mut String, template: &str, whole: &str) {
    let mut rest = template;
    while let Some((before, after)) = rest.split_once('$') {
        out.push_str(before);
        if let Some(after_dollars) = after.strip_prefix('$') {
            out.push('$');
            rest = after_dollars;
            continue;
        }
        match group_reference(after) {
            Some((name, after_ref)) => {
                // Only group 0 exists; Go rejects leading zeros ("00"), and
                // names of groups that do not exist expand to nothing.
                if name == "0" {
                    out.push_str(whole);
                }
                rest = after_ref;
            }
            // Not a reference: the `$` is kept as text.
            None => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
}

/// Reads `name` or `{name}` (letters, digits, `_`) after a `$` in a
/// replacement template; returns the name and the text after it.
fn group_reference(s: &str) -> Option<(&str, &str)> {
    let (braced, body) = match s.strip_prefix('{') {
        Some(body) => (true, body),
        None => (false, s),
    };
    let len: usize = body
        .chars()
        .take_while(|&c| super::unicode::is_letter(c) || super::unicode::is_digit(c) || c == '_')
        .map(char::len_utf8)
        .sum();
    if len == 0 {
        return None;
    }
    let (name, after) = body.split_at_checked(len)?;
    if braced {
        return Some((name, after.strip_prefix('}')?));
    }
    Some((name, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(p: &str) -> Vec<Token> {
        Pattern::parse(p).unwrap().tokens
    }

    #[test]
    fn parse_escapes_and_literals() {
        use Token::*;
        assert_eq!(tokens("*"), [AnyRun]);
        assert_eq!(tokens("?"), [AnyChar]);
        assert_eq!(tokens("\\*"), [Literal('*')]);
        // Regex metacharacters and brackets are plain characters.
        assert_eq!(
            tokens("[a].+"),
            "[a].+".chars().map(Literal).collect::<Vec<_>>()
        );
        assert_eq!(
            tokens("a\\}b\\/"),
            [Literal('a'), Literal('}'), Literal('b'), Literal('/')]
        );
        assert_eq!(tokens("\\\\?"), [Literal('\\'), AnyChar]);
        assert_eq!(tokens("\u{FEFF}x"), [Literal('x')]);
        for bad in ["\\", "\\x", "\\\\\\", "a\\#"] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn reverse_keeps_escape_pairs() {
        assert_eq!(reverse_pattern("a\\*c"), "c\\*a");
        assert_eq!(reverse_pattern("\\\\\\ab"), "b\\a\\\\");
        assert_eq!(reverse_pattern("ab\\"), "\\ba");
        assert_eq!(reverse_pattern("👽\\🚀🖖"), "🖖\\🚀👽");
        assert_eq!(reverse_pattern(""), "");
    }

    #[test]
    fn prefix_and_suffix_trimming() {
        assert_eq!(trim_prefix("*x", "axbxc", false).unwrap(), "bxc");
        assert_eq!(trim_prefix("*x", "axbxc", true).unwrap(), "c");
        assert_eq!(trim_prefix("?", "한국", false).unwrap(), "국");
        assert_eq!(trim_prefix("b", "abc", true).unwrap(), "abc");
        assert_eq!(trim_suffix("x*", "axbxc", false).unwrap(), "axb");
        assert_eq!(trim_suffix("x*", "axbxc", true).unwrap(), "a");
        assert_eq!(trim_suffix("\\**", "xx**", true).unwrap(), "xx");
        // `*` and `?` stop at newlines, as Go's `.` does.
        assert_eq!(trim_prefix("*", "a\nb", true).unwrap(), "\nb");
        assert_eq!(trim_prefix("a?b", "a\nb", true).unwrap(), "a\nb");
        assert_eq!(trim_prefix("a\nb", "a\nbc", true).unwrap(), "c");
    }

    #[test]
    fn replace_first_and_all() {
        assert_eq!(replace("o", "foo", "0", false).unwrap(), "f0o");
        assert_eq!(replace("o", "foo", "0", true).unwrap(), "f00");
        // Leftmost, then longest.
        assert_eq!(replace("b*", "abbcb", "X", false).unwrap(), "aX");
        // Empty matches: everywhere except right after a match.
        assert_eq!(replace("", "ab", "-", true).unwrap(), "-a-b-");
        assert_eq!(replace("*", "ab", "-", true).unwrap(), "-");
        assert_eq!(replace("*", "a\nb", "-", true).unwrap(), "-\n-");
        // `$0` is the match when replacing all, literal text otherwise.
        assert_eq!(replace("b", "abc", "[$0]", true).unwrap(), "a[b]c");
        assert_eq!(replace("b", "abc", "[${0}]", true).unwrap(), "a[b]c");
        assert_eq!(replace("b", "abc", "[$0]", false).unwrap(), "a[$0]c");
        assert_eq!(replace("b", "abc", "[$1$x${x}$00]", true).unwrap(), "a[]c");
        assert_eq!(
            replace("b", "abc", "[$$-$-${-$]", true).unwrap(),
            "a[$-$-${-$]c"
        );
        assert!(replace("\\q", "abc", "", true).is_err());
    }
}
