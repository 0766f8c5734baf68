//! One path component of a COPY/ADD source matched the way Go's
//! `path/filepath.Match` matches it on Unix (which is what BuildKit uses to
//! expand source wildcards, one walk level per pattern component).
//!
//! Syntax: `*` any run of characters, `?` one character, `[...]` a class
//! (`[^...]` negated, `a-z` ranges, `\x` escapes inside), `\x` the literal `x`.
//! A malformed pattern (unterminated class, `[]`, a class item starting with an
//! unescaped `-` or `]`, a trailing `\`) matches nothing, as BuildKit ignores
//! `filepath.Match`'s error and treats it as "no match".

/// Does this source component contain an unescaped `*`, `?` or `[`? (BuildKit's
/// `containsWildcards`: a `\` hides the character after it.)
pub(crate) fn has_wildcards(component: &str) -> bool {
    let bytes = component.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyChar,
    Star,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A compiled pattern component.
#[derive(Debug, Clone)]
pub(crate) struct Glob {
    /// `None` when the pattern is malformed: it matches nothing.
    tokens: Option<Vec<Token>>,
}

impl Glob {
    pub(crate) fn new(pattern: &str) -> Glob {
        Glob {
            tokens: parse(pattern),
        }
    }

    pub(crate) fn is_valid(&self) -> bool {
        self.tokens.is_some()
    }

    pub(crate) fn matches(&self, name: &str) -> bool {
        let Some(tokens) = &self.tokens else {
            return false;
        };
        // Fast path: no star means a one-to-one walk.
        let name: Vec<char> = name.chars().collect();
        let (mut ti, mut ni) = (0usize, 0usize);
        // Position after the last star and the name index it is currently
        // assumed to have consumed up to (classic single-backtrack glob).
        let mut star: Option<(usize, usize)> = None;
        loop {
            if ti < tokens.len() {
                match &tokens[ti] {
                    Token::Star => {
                        star = Some((ti + 1, ni));
                        ti += 1;
                        continue;
                    }
                    token => {
                        if ni < name.len() && token_matches(token, name[ni]) {
                            ti += 1;
                            ni += 1;
                            continue;
                        }
                    }
                }
            } else if ni == name.len() {
                return true;
            }
            match star {
                Some((after, consumed)) if consumed < name.len() => {
                    star = Some((after, consumed + 1));
                    ti = after;
                    ni = consumed + 1;
                }
                _ => return false,
            }
        }
    }
}

fn token_matches(token: &Token, c: char) -> bool {
    match token {
        Token::Literal(l) => *l == c,
        // Components never contain `/`, so "any but separator" is "any".
        Token::AnyChar => c != '/',
        Token::Star => true,
        Token::Class { negated, ranges } => {
            let hit = ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
            hit != *negated
        }
    }
}

fn parse(pattern: &str) -> Option<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => {
                if tokens.last() != Some(&Token::Star) {
                    tokens.push(Token::Star);
                }
            }
            '?' => tokens.push(Token::AnyChar),
            '\\' => tokens.push(Token::Literal(chars.next()?)),
            '[' => {
                let negated = chars.next_if_eq(&'^').is_some();
                let mut ranges = Vec::new();
                loop {
                    if !ranges.is_empty() && chars.next_if_eq(&']').is_some() {
                        break;
                    }
                    let lo = class_char(&mut chars)?;
                    let hi = if chars.next_if_eq(&'-').is_some() {
                        class_char(&mut chars)?
                    } else {
                        lo
                    };
                    ranges.push((lo, hi));
                }
                tokens.push(Token::Class { negated, ranges });
            }
            c => tokens.push(Token::Literal(c)),
        }
    }
    Some(tokens)
}

/// One class character (Go's `getEsc`): `-` and `]` must be escaped, `\x` is `x`,
/// and the pattern must not end inside the class.
fn class_char(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<char> {
    match chars.next()? {
        '-' | ']' => None,
        '\\' => chars.next(),
        c => Some(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        Glob::new(pattern).matches(name)
    }

    #[test]
    fn go_filepath_match_cases() {
        // A selection of Go's own `TestMatch` table (single components).
        let cases: &[(&str, &str, bool)] = &[
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*", "abc", true),
            ("a*b*c*d*e*", "axbxcxdxe", true),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("a*b?c*x", "abxbbxdbxebxczzy", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a[^a]b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("[a-ζ]*", "α", true),
            ("*[a-ζ]", "A", false),
            ("[\\-]", "-", true),
            ("[x\\-]", "x", true),
            ("[x\\-]", "z", false),
            ("[\\-x]", "-", true),
            ("*x", "xxx", true),
            ("", "", true),
            ("", "a", false),
        ];
        for &(pattern, name, want) in cases {
            assert_eq!(m(pattern, name), want, "match({pattern:?}, {name:?})");
        }
    }

    #[test]
    fn malformed_patterns_match_nothing() {
        for pattern in [
            "[", "[^", "[^bc", "a[", "[]a]", "[-]", "[x-]", "[a-b-c]x", "a\\",
        ] {
            let g = Glob::new(pattern);
            assert!(!g.is_valid(), "{pattern:?} should be malformed");
            assert!(!g.matches("a"), "{pattern:?}");
        }
        // (`[a-b-c]x` above: after the range a-b, an unescaped `-` starts an item.)
        assert!(Glob::new("[a-b]").is_valid());
    }

    #[test]
    fn wildcard_detection() {
        assert!(has_wildcards("*.txt"));
        assert!(has_wildcards("a?"));
        assert!(has_wildcards("[ab]"));
        assert!(!has_wildcards("plain.txt"));
        assert!(!has_wildcards("a\\*b"));
        assert!(has_wildcards("a\\\\*"));
    }
}
