//! One `.dockerignore` pattern, compiled the way moby/patternmatcher v0.6.1 compiles it.
//!
//! The pipeline mirrors upstream step by step, because the observable behaviour
//! (including its oddities) comes from those steps:
//!
//! 1. **Syntax check** ([`glob_match`]): upstream calls Go's `filepath.Match(p, ".")`
//!    and rejects the pattern if that reports `ErrBadPattern`. This is a port of
//!    Go's (Unix) `filepath.Match`, so exactly the same patterns are rejected.
//! 2. **Classification and regexp text** ([`regexp_source`]): upstream turns the
//!    cleaned pattern into one of four match kinds: exact string, prefix
//!    (`dir/**`), suffix (`**`, `**/x`, `**x`) or an anchored regexp whose
//!    *source text* is built by simple substitution (`*` → `[^/]*`, `?` → `[^/]`,
//!    `**` → `(.*/)?` or `.*`, `\x` → `\x`, `.+()|{}$` escaped, everything else,
//!    including `[`, `]`, `^` and `-`, copied verbatim).
//! 3. **Regexp parsing** ([`parse_go_regexp`]): that text is compiled with Go's
//!    `regexp` package (RE2 syntax with Perl flags). Because the text is built by
//!    substitution, it can contain Go-regexp constructs the author never meant
//!    (`[a*]` becomes `[a[^/]*]`, `\d` stays a digit class, `[[:alpha:]]` is a POSIX
//!    class). We parse that text with Go's rules, so such patterns behave as they do
//!    in Docker; text Go would reject makes the pattern fail when it is *matched*,
//!    as upstream does (the `[Local-Only]` case, moby/moby#52203).
//! 4. **Matching** ([`Program`]): a small Pike VM (Thompson NFA simulation) over
//!    Unicode scalar values, linear in `path length × pattern size`.

use super::IgnoreError;

/// The path separator. rbuild follows upstream's Unix behaviour: `\` escapes.
const SEP: u8 = b'/';

/// How a cleaned pattern is matched against a path (upstream `matchType`).
#[derive(Debug, Clone)]
enum Matcher {
    /// The path equals the cleaned pattern.
    Exact,
    /// The pattern is `<literal>**`: the path starts with `<literal>`.
    Prefix,
    /// The pattern is `**<literal>`: the path ends with `<literal>`, or
    /// `<literal>` is `/x` and the path is `x`.
    Suffix,
    /// Anything else: the compiled regexp.
    Regexp(Program),
    /// The regexp text was rejected by Go's regexp parser. Upstream accepts the
    /// pattern in `New` and reports `syntax error in pattern` on every match
    /// attempt; we do the same.
    Invalid { regexp: String, reason: String },
}

/// A compiled pattern from a `.dockerignore` list.
#[derive(Debug, Clone)]
pub(super) struct Pattern {
    /// The pattern as the caller gave it (for error messages).
    original: String,
    /// Trimmed, `filepath.Clean`ed, and without a leading `!`.
    cleaned: String,
    /// `true` for `!pattern` (re-include).
    exclusion: bool,
    matcher: Matcher,
}

impl Pattern {
    /// Compiles one pattern as upstream `New` does. Returns `Ok(None)` for a
    /// pattern that is empty after trimming (upstream skips those).
    pub(super) fn new(original: &str) -> Result<Option<Pattern>, IgnoreError> {
        let trimmed = original.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        let cleaned = super::clean_path(trimmed);
        let (exclusion, body) = match cleaned.strip_prefix('!') {
            Some("") => {
                return Err(IgnoreError::IllegalExclusion {
                    pattern: original.to_string(),
                })
            }
            Some(rest) => (true, rest.to_string()),
            None => (false, cleaned),
        };
        if let Err(reason) = glob_match(&body, ".") {
            return Err(IgnoreError::Syntax {
                pattern: original.to_string(),
                reason: reason.to_string(),
            });
        }
        let (kind, source) = regexp_source(&body);
        let matcher = match kind {
            Kind::Exact => Matcher::Exact,
            Kind::Prefix => Matcher::Prefix,
            Kind::Suffix => Matcher::Suffix,
            Kind::Regexp => match parse_go_regexp(&source) {
                Ok(node) => Matcher::Regexp(Program::compile(&node)),
                Err(reason) => Matcher::Invalid {
                    regexp: source,
                    reason,
                },
            },
        };
        Ok(Some(Pattern {
            original: original.to_string(),
            cleaned: body,
            exclusion,
            matcher,
        }))
    }

    pub(super) fn is_exclusion(&self) -> bool {
        self.exclusion
    }

    /// The cleaned pattern text, without the leading `!`.
    pub(super) fn cleaned(&self) -> &str {
        &self.cleaned
    }

    /// Upstream `Pattern.match`: does `path` itself (no parent logic) match?
    pub(super) fn matches(&self, path: &str) -> Result<bool, IgnoreError> {
        let pat = self.cleaned.as_bytes();
        let path_b = path.as_bytes();
        Ok(match &self.matcher {
            Matcher::Exact => path == self.cleaned,
            Matcher::Prefix => path_b.starts_with(&pat[..pat.len().saturating_sub(2)]),
            Matcher::Suffix => {
                // Byte slicing like Go (a leading BOM would make this cut a char).
                let suffix = pat.get(2..).unwrap_or_default();
                path_b.ends_with(suffix) || (suffix.first() == Some(&SEP) && path_b == &suffix[1..])
            }
            Matcher::Regexp(program) => program.is_match(path),
            Matcher::Invalid { regexp, reason } => {
                return Err(IgnoreError::Regexp {
                    pattern: self.original.clone(),
                    regexp: regexp.clone(),
                    reason: reason.clone(),
                })
            }
        })
    }

    /// Could this pattern match some path `prefix + rest` with a non-empty `rest`?
    /// `prefix` is a directory followed by `/`. Errs on the side of `true`.
    pub(super) fn may_match_below(&self, prefix: &str) -> bool {
        let pat = self.cleaned.as_bytes();
        match &self.matcher {
            Matcher::Exact => pat.len() > prefix.len() && pat.starts_with(prefix.as_bytes()),
            Matcher::Prefix => {
                let lit = &pat[..pat.len().saturating_sub(2)];
                lit.starts_with(prefix.as_bytes()) || prefix.as_bytes().starts_with(lit)
            }
            // `**x` matches `<prefix>y x` for any non-empty literal tail.
            Matcher::Suffix => true,
            Matcher::Regexp(program) => program.may_match_with_prefix(prefix),
            Matcher::Invalid { .. } => true,
        }
    }
}

// ---------------------------------------------------------------------------
// Step 1: Go's filepath.Match (Unix), used only for its syntax errors.
// ---------------------------------------------------------------------------

/// Port of Go's `path/filepath.Match` (Unix flavour, Go ≥ 1.16 which validates the
/// whole pattern). Returns `Err(reason)` exactly where Go returns `ErrBadPattern`.
pub(super) fn glob_match(pattern: &str, name: &str) -> Result<bool, &'static str> {
    let mut pattern = pattern.as_bytes();
    let mut name = name.as_bytes();
    'pattern: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // Trailing `*` matches the rest of the name unless it has a `/`.
            return Ok(!name.contains(&SEP));
        }
        if let Some(t) = match_chunk(chunk, name)? {
            if t.is_empty() || !pattern.is_empty() {
                name = t;
                continue;
            }
        }
        if star {
            let mut i = 0;
            while i < name.len() && name[i] != SEP {
                if let Some(t) = match_chunk(chunk, &name[i + 1..])? {
                    // On the last chunk the name must be used up.
                    if !pattern.is_empty() || t.is_empty() {
                        name = t;
                        continue 'pattern;
                    }
                }
                i += 1;
            }
        }
        // Before failing, check the rest of the pattern is well formed.
        while !pattern.is_empty() {
            let (_, chunk, rest) = scan_chunk(pattern);
            pattern = rest;
            match_chunk(chunk, b"")?;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Go's `scanChunk`: leading stars, then everything up to the next `*` outside `[]`.
fn scan_chunk(pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let mut p = pattern;
    let mut star = false;
    while let [b'*', rest @ ..] = p {
        p = rest;
        star = true;
    }
    let mut in_range = false;
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            // A trailing `\` is left for match_chunk to reject.
            b'\\' if i + 1 < p.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    (star, &p[..i], &p[i..])
}

/// Go's `matchChunk`: `Ok(Some(rest))` when `chunk` matches a prefix of `s`,
/// `Ok(None)` when it does not; errors are independent of `s`.
fn match_chunk<'a>(mut chunk: &[u8], mut s: &'a [u8]) -> Result<Option<&'a [u8]>, &'static str> {
    let mut failed = false;
    while let Some(&c) = chunk.first() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match c {
            b'[' => {
                let mut r = 0u32;
                if !failed {
                    let (ch, n) = decode_rune(s);
                    r = ch;
                    s = &s[n..];
                }
                chunk = &chunk[1..];
                let mut negated = false;
                if chunk.first() == Some(&b'^') {
                    negated = true;
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut nrange = 0;
                loop {
                    if chunk.first() == Some(&b']') && nrange > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = get_esc(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if chunk[0] == b'-' {
                        let (h, rest) = get_esc(&chunk[1..])?;
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    nrange += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            b'?' => {
                if !failed {
                    if s[0] == SEP {
                        failed = true;
                    }
                    let (_, n) = decode_rune(s);
                    s = &s[n..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                if c == b'\\' {
                    chunk = &chunk[1..];
                    if chunk.is_empty() {
                        return Err("trailing backslash escapes nothing");
                    }
                }
                if !failed {
                    if chunk[0] != s[0] {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    Ok(if failed { None } else { Some(s) })
}

/// Go's `getEsc`: one (possibly escaped) character of a `[...]` class.
fn get_esc(chunk: &[u8]) -> Result<(u32, &[u8]), &'static str> {
    let mut c = chunk;
    match c.first() {
        None => return Err("unterminated character class"),
        Some(b'-') => return Err("misplaced '-' in character class"),
        Some(b']') => return Err("empty character class or misplaced ']'"),
        Some(b'\\') => {
            c = &c[1..];
            if c.is_empty() {
                return Err("unterminated character class");
            }
        }
        Some(_) => {}
    }
    let (r, n) = decode_rune(c);
    if r == 0xFFFD && n == 1 {
        return Err("invalid UTF-8 in character class");
    }
    let rest = &c[n..];
    if rest.is_empty() {
        return Err("unterminated character class");
    }
    Ok((r, rest))
}

/// Go's `utf8.DecodeRune`: `(U+FFFD, 1)` for invalid or truncated input,
/// `(U+FFFD, 0)` for empty input.
fn decode_rune(b: &[u8]) -> (u32, usize) {
    let Some(&first) = b.first() else {
        return (0xFFFD, 0);
    };
    let len = match first {
        0x00..=0x7F => return (u32::from(first), 1),
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return (0xFFFD, 1),
    };
    match b.get(..len).and_then(|s| std::str::from_utf8(s).ok()) {
        Some(s) => (s.chars().next().map_or(0xFFFD, u32::from), len),
        None => (0xFFFD, 1),
    }
}

// ---------------------------------------------------------------------------
// Step 2: classification and regexp source text (upstream `Pattern.compile`).
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exact,
    Prefix,
    Suffix,
    Regexp,
}

/// Upstream `Pattern.compile` with `/` as separator: the match kind and the Go
/// regexp source (only meaningful for [`Kind::Regexp`]).
fn regexp_source(pattern: &str) -> (Kind, String) {
    let mut re = String::from("^");
    let mut kind = Kind::Exact;
    let mut chars = pattern.chars().peekable();
    // Go's text/scanner silently drops a byte-order mark at the very start.
    if chars.peek() == Some(&'\u{FEFF}') {
        chars.next();
    }
    let mut i = 0usize;
    while let Some(ch) = chars.next() {
        match ch {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                // Treat `**/` as `**`: eat the `/`.
                if chars.peek() == Some(&'/') {
                    chars.next();
                }
                if chars.peek().is_none() {
                    // `**` at the end accepts everything, like .gitignore.
                    if kind == Kind::Exact {
                        kind = Kind::Prefix;
                    } else {
                        re.push_str(".*");
                        kind = Kind::Regexp;
                    }
                } else {
                    // Any number of directories, even none.
                    re.push_str("(.*/)?");
                    kind = Kind::Regexp;
                }
                if i == 0 {
                    kind = Kind::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                kind = Kind::Regexp;
            }
            '?' => {
                re.push_str("[^/]");
                kind = Kind::Regexp;
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                re.push('\\');
                re.push(ch);
            }
            '\\' => match chars.next() {
                Some(next) => {
                    re.push('\\');
                    re.push(next);
                    kind = Kind::Regexp;
                }
                // Unreachable after the syntax check, kept for fidelity.
                None => re.push('\\'),
            },
            '[' | ']' => {
                re.push(ch);
                kind = Kind::Regexp;
            }
            _ => re.push(ch),
        }
        i += 1;
    }
    if kind == Kind::Regexp {
        re.push('$');
    }
    (kind, re)
}

// ---------------------------------------------------------------------------
// Step 3: Go regexp syntax (RE2, Perl flags: OneLine, ClassNL, PerlX,
// UnicodeGroups; no DotNL, no FoldCase), parsed into a small AST.
// ---------------------------------------------------------------------------

const MAX_RUNE: u32 = 0x10FFFF;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    BeginText,
    EndText,
    WordBoundary,
    NotWordBoundary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rep {
    Star,
    Plus,
    Quest,
}

#[derive(Debug, Clone)]
enum Node {
    Char(char),
    /// Sorted, non-overlapping, non-adjacent inclusive ranges of code points.
    Class(Vec<(u32, u32)>),
    AnyNotNl,
    Look(Look),
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    Repeat(Box<Node>, Rep),
}

/// Parses `src` with Go `regexp.Compile` rules, as far as they can be reached from
/// [`regexp_source`] output (plus a little more). `Err` carries Go's complaint.
fn parse_go_regexp(src: &str) -> Result<Node, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut p = RegexpParser { s: &chars, pos: 0 };
    let node = p.alternation(0)?;
    if p.pos < p.s.len() {
        return Err("unexpected ): `)`".to_string());
    }
    Ok(node)
}

struct RegexpParser<'a> {
    s: &'a [char],
    pos: usize,
}

impl RegexpParser<'_> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.pos).copied()
    }

    fn rest(&self) -> &[char] {
        &self.s[self.pos..]
    }

    fn alternation(&mut self, depth: usize) -> Result<Node, String> {
        if depth > 1000 {
            return Err("expression nests too deeply".to_string());
        }
        let mut branches = vec![self.concat(depth)?];
        while self.peek() == Some('|') {
            self.pos += 1;
            branches.push(self.concat(depth)?);
        }
        Ok(if branches.len() == 1 {
            branches.pop().unwrap_or(Node::Concat(Vec::new()))
        } else {
            Node::Alt(branches)
        })
    }

    fn concat(&mut self, depth: usize) -> Result<Node, String> {
        let mut items: Vec<Node> = Vec::new();
        let mut last_was_repeat = false;
        while let Some(c) = self.peek() {
            let mut is_repeat = false;
            match c {
                '|' | ')' => break,
                '*' | '+' | '?' => {
                    let op = match c {
                        '*' => Rep::Star,
                        '+' => Rep::Plus,
                        _ => Rep::Quest,
                    };
                    if last_was_repeat {
                        return Err(format!("invalid nested repetition operator: `{c}`"));
                    }
                    let Some(prev) = items.pop() else {
                        return Err(format!("missing argument to repetition operator: `{c}`"));
                    };
                    self.pos += 1;
                    // Non-greedy marker: irrelevant for a yes/no match.
                    if self.peek() == Some('?') {
                        self.pos += 1;
                    }
                    items.push(Node::Repeat(Box::new(prev), op));
                    is_repeat = true;
                }
                '(' => {
                    self.pos += 1;
                    if self.peek() == Some('?') {
                        // Never produced from a dockerignore pattern (`(` only comes
                        // from `(.*/)?`); flag groups are not supported here.
                        return Err("unsupported group syntax: `(?`".to_string());
                    }
                    let inner = self.alternation(depth + 1)?;
                    if self.peek() != Some(')') {
                        return Err("missing closing ): `(`".to_string());
                    }
                    self.pos += 1;
                    items.push(inner);
                }
                '[' => items.push(self.class()?),
                '.' => {
                    self.pos += 1;
                    items.push(Node::AnyNotNl);
                }
                '^' => {
                    self.pos += 1;
                    items.push(Node::Look(Look::BeginText));
                }
                '$' => {
                    self.pos += 1;
                    items.push(Node::Look(Look::EndText));
                }
                '\\' => self.top_escape(&mut items)?,
                // Everything else, including `]`, `{` and `}` (compile() always
                // escapes braces, so counted repetition never occurs), is literal.
                _ => {
                    self.pos += 1;
                    items.push(Node::Char(c));
                }
            }
            last_was_repeat = is_repeat;
        }
        Ok(Node::Concat(items))
    }

    /// A `\` outside a class (Go's parse loop, `case '\\'`).
    fn top_escape(&mut self, items: &mut Vec<Node>) -> Result<(), String> {
        if let Some(&c) = self.s.get(self.pos + 1) {
            let look = match c {
                'A' => Some(Look::BeginText),
                'b' => Some(Look::WordBoundary),
                'B' => Some(Look::NotWordBoundary),
                'z' => Some(Look::EndText),
                'C' => return Err("invalid escape sequence: `\\C`".to_string()),
                'Q' => {
                    // `\Q...\E`: literal text up to `\E` or the end.
                    self.pos += 2;
                    while let Some(ch) = self.peek() {
                        if ch == '\\' && self.s.get(self.pos + 1) == Some(&'E') {
                            self.pos += 2;
                            break;
                        }
                        items.push(Node::Char(ch));
                        self.pos += 1;
                    }
                    return Ok(());
                }
                _ => None,
            };
            if let Some(look) = look {
                self.pos += 2;
                items.push(Node::Look(look));
                return Ok(());
            }
        }
        if let Some(class) = self.unicode_class()? {
            items.push(Node::Class(class));
            return Ok(());
        }
        if let Some(class) = self.perl_class() {
            items.push(Node::Class(class));
            return Ok(());
        }
        let value = self.escape()?;
        items.push(match char::from_u32(value) {
            Some(ch) => Node::Char(ch),
            // A surrogate code point can never occur in a Rust string.
            None => Node::Class(Vec::new()),
        });
        Ok(())
    }

    /// Go's `parseEscape`, at a `\`: a single escaped character.
    fn escape(&mut self) -> Result<u32, String> {
        let start = self.pos;
        self.pos += 1;
        let Some(c) = self.peek() else {
            return Err("trailing backslash at end of expression".to_string());
        };
        self.pos += 1;
        let bad = |p: &Self| {
            let seq: String = p.s[start..p.pos.min(p.s.len())].iter().collect();
            Err(format!("invalid escape sequence: `{seq}`"))
        };
        let is_octal = |ch: Option<char>| matches!(ch, Some('0'..='7'));
        match c {
            '1'..='7' if !is_octal(self.peek()) => bad(self), // backreference
            '0'..='7' => {
                let mut r = c as u32 - '0' as u32;
                for _ in 1..3 {
                    match self.peek() {
                        Some(d @ '0'..='7') => {
                            r = r * 8 + (d as u32 - '0' as u32);
                            self.pos += 1;
                        }
                        _ => break,
                    }
                }
                Ok(r)
            }
            'x' => {
                let Some(first) = self.peek() else {
                    return bad(self);
                };
                self.pos += 1;
                if first == '{' {
                    let mut r: u32 = 0;
                    let mut digits = 0;
                    loop {
                        let Some(d) = self.peek() else {
                            return bad(self);
                        };
                        self.pos += 1;
                        if d == '}' {
                            break;
                        }
                        let Some(v) = d.to_digit(16) else {
                            return bad(self);
                        };
                        r = r * 16 + v;
                        if r > MAX_RUNE {
                            return bad(self);
                        }
                        digits += 1;
                    }
                    if digits == 0 {
                        return bad(self);
                    }
                    return Ok(r);
                }
                let Some(second) = self.peek() else {
                    return bad(self);
                };
                self.pos += 1;
                match (first.to_digit(16), second.to_digit(16)) {
                    (Some(x), Some(y)) => Ok(x * 16 + y),
                    _ => bad(self),
                }
            }
            'a' => Ok(0x07),
            'f' => Ok(0x0C),
            'n' => Ok(0x0A),
            'r' => Ok(0x0D),
            't' => Ok(0x09),
            'v' => Ok(0x0B),
            // Escaped ASCII punctuation (and `_`) is itself.
            _ if c.is_ascii() && !c.is_ascii_alphanumeric() => Ok(c as u32),
            _ => bad(self),
        }
    }

    /// Go's `parsePerlClassEscape`: `\d \D \s \S \w \W` (ASCII only).
    fn perl_class(&mut self) -> Option<Vec<(u32, u32)>> {
        let rest = self.rest();
        if rest.len() < 2 || rest[0] != '\\' {
            return None;
        }
        let (ranges, negate): (&[(u32, u32)], bool) = match rest[1] {
            'd' => (PERL_DIGIT, false),
            'D' => (PERL_DIGIT, true),
            's' => (PERL_SPACE, false),
            'S' => (PERL_SPACE, true),
            'w' => (PERL_WORD, false),
            'W' => (PERL_WORD, true),
            _ => return None,
        };
        self.pos += 2;
        Some(if negate {
            complement(ranges)
        } else {
            ranges.to_vec()
        })
    }

    /// Go's `parseUnicodeClass`: `\pX`, `\PX`, `\p{Name}`, `\P{^Name}`.
    fn unicode_class(&mut self) -> Result<Option<Vec<(u32, u32)>>, String> {
        let rest = self.rest();
        if rest.len() < 2 || rest[0] != '\\' || (rest[1] != 'p' && rest[1] != 'P') {
            return Ok(None);
        }
        let mut negate = rest[1] == 'P';
        let Some(&c) = rest.get(2) else {
            // `\p` at the very end: not a class; parseEscape will reject it.
            return Ok(None);
        };
        let (name, consumed): (String, usize) = if c != '{' {
            (c.to_string(), 3)
        } else {
            let Some(end) = rest.iter().position(|&ch| ch == '}') else {
                let seq: String = rest.iter().collect();
                return Err(format!("invalid character class range: `{seq}`"));
            };
            (rest[3..end].iter().collect(), end + 1)
        };
        let seq: String = rest[..consumed].iter().collect();
        let mut name = name.as_str();
        if let Some(stripped) = name.strip_prefix('^') {
            negate = !negate;
            name = stripped;
        }
        let Some(ranges) = unicode_table(name) else {
            return Err(format!("invalid character class range: `{seq}`"));
        };
        self.pos += consumed;
        Ok(Some(if negate { complement(&ranges) } else { ranges }))
    }

    /// Go's `parseClass`, at a `[`.
    fn class(&mut self) -> Result<Node, String> {
        let start = self.pos;
        let whole = |p: &Self| -> String { p.s[start..].iter().collect() };
        self.pos += 1;
        let mut negated = false;
        if self.peek() == Some('^') {
            negated = true;
            self.pos += 1;
        }
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        let mut first = true; // `]` is literal as the first item
        loop {
            if self.peek() == Some(']') && !first {
                self.pos += 1;
                break;
            }
            first = false;
            let rest = self.rest();
            // POSIX `[:alpha:]`; Go searches for `:]` anywhere further on.
            if rest.len() > 2 && rest[0] == '[' && rest[1] == ':' {
                if let Some(i) = rest[2..].windows(2).position(|w| w == [':', ']']) {
                    let name: String = rest[..i + 4].iter().collect();
                    let Some(group) = posix_group(&name) else {
                        return Err(format!("invalid character class range: `{name}`"));
                    };
                    ranges.extend(group);
                    self.pos += i + 4;
                    continue;
                }
            }
            if let Some(class) = self.unicode_class()? {
                ranges.extend(class);
                continue;
            }
            if let Some(class) = self.perl_class() {
                ranges.extend(class);
                continue;
            }
            let range_start = self.pos;
            let lo = self.class_char(&whole)?;
            let mut hi = lo;
            let rest = self.rest();
            if rest.len() >= 2 && rest[0] == '-' && rest[1] != ']' {
                self.pos += 1;
                hi = self.class_char(&whole)?;
                if hi < lo {
                    let seq: String = self.s[range_start..self.pos].iter().collect();
                    return Err(format!("invalid character class range: `{seq}`"));
                }
            }
            ranges.push((lo, hi));
        }
        let ranges = normalize(ranges);
        Ok(Node::Class(if negated {
            complement(&ranges)
        } else {
            ranges
        }))
    }

    /// Go's `parseClassChar`.
    fn class_char(&mut self, whole: &dyn Fn(&Self) -> String) -> Result<u32, String> {
        match self.peek() {
            None => Err(format!("missing closing ]: `{}`", whole(self))),
            Some('\\') => self.escape(),
            Some(c) => {
                self.pos += 1;
                Ok(c as u32)
            }
        }
    }
}

const PERL_DIGIT: &[(u32, u32)] = &[(0x30, 0x39)];
const PERL_SPACE: &[(u32, u32)] = &[(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)];
const PERL_WORD: &[(u32, u32)] = &[(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)];

/// Go's `posixGroup` table (ASCII only), by full bracket name.
fn posix_group(name: &str) -> Option<Vec<(u32, u32)>> {
    let inner = name.strip_prefix("[:")?.strip_suffix(":]")?;
    let (negate, inner) = match inner.strip_prefix('^') {
        Some(rest) => (true, rest),
        None => (false, inner),
    };
    let ranges: &[(u32, u32)] = match inner {
        "alnum" => &[(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)],
        "alpha" => &[(0x41, 0x5A), (0x61, 0x7A)],
        "ascii" => &[(0x00, 0x7F)],
        "blank" => &[(0x09, 0x09), (0x20, 0x20)],
        "cntrl" => &[(0x00, 0x1F), (0x7F, 0x7F)],
        "digit" => &[(0x30, 0x39)],
        "graph" => &[(0x21, 0x7E)],
        "lower" => &[(0x61, 0x7A)],
        "print" => &[(0x20, 0x7E)],
        "punct" => &[(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)],
        "space" => &[(0x09, 0x0D), (0x20, 0x20)],
        "upper" => &[(0x41, 0x5A)],
        "word" => &[(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
        "xdigit" => &[(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
        _ => return None,
    };
    Some(if negate {
        complement(ranges)
    } else {
        ranges.to_vec()
    })
}

/// Go's `unicodeTable` for the names reachable here: `Any` and the general
/// categories (`L`, `Lu`, ...). Go's `C` has no unassigned code points (no `Cn`).
/// Script names are not supported (the `\p{...}` form cannot be produced from a
/// dockerignore pattern, because compile() escapes `{`). Tables come from
/// regex-syntax, so they follow its Unicode version, not Go 1.19's.
fn unicode_table(name: &str) -> Option<Vec<(u32, u32)>> {
    const CATEGORIES: &[&str] = &[
        "C", "Cc", "Cf", "Co", "Cs", "L", "Ll", "Lm", "Lo", "Lt", "Lu", "M", "Mc", "Me", "Mn", "N",
        "Nd", "Nl", "No", "P", "Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "S", "Sc", "Sk", "Sm",
        "So", "Z", "Zl", "Zp", "Zs",
    ];
    if name == "Any" {
        return Some(vec![(0, MAX_RUNE)]);
    }
    if !CATEGORIES.contains(&name) {
        return None;
    }
    let parts: Vec<&str> = match name {
        "C" => vec!["Cc", "Cf", "Co"],
        "Cs" => return Some(vec![(0xD800, 0xDFFF)]),
        other => vec![other],
    };
    let mut ranges = Vec::new();
    for part in parts {
        let hir = regex_syntax::Parser::new()
            .parse(&format!(r"\p{{{part}}}"))
            .ok()?;
        match hir.kind() {
            regex_syntax::hir::HirKind::Class(regex_syntax::hir::Class::Unicode(class)) => {
                ranges.extend(
                    class
                        .ranges()
                        .iter()
                        .map(|r| (u32::from(r.start()), u32::from(r.end()))),
                );
            }
            _ => return None,
        }
    }
    Some(normalize(ranges))
}

/// Sorts and merges overlapping or adjacent ranges.
fn normalize(mut ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    ranges.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// The complement over `0..=U+10FFFF`.
fn complement(ranges: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut next = 0u32;
    for &(lo, hi) in &normalize(ranges.to_vec()) {
        if lo > next {
            out.push((next, lo - 1));
        }
        next = hi.saturating_add(1);
    }
    if next <= MAX_RUNE {
        out.push((next, MAX_RUNE));
    }
    out
}

fn class_contains(ranges: &[(u32, u32)], c: char) -> bool {
    let c = u32::from(c);
    ranges
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Go's `\b` is ASCII-only.
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

// ---------------------------------------------------------------------------
// Step 4: Thompson NFA and Pike VM.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Inst {
    Char(char),
    Class(Box<[(u32, u32)]>),
    AnyNotNl,
    Split(usize, usize),
    Jmp(usize),
    Look(Look),
    Match,
}

/// A compiled regexp: an NFA evaluated with a Pike VM. Semantics are Go's
/// `Regexp.MatchString` (unanchored search; our sources start with `^`).
#[derive(Debug, Clone)]
pub(super) struct Program {
    insts: Vec<Inst>,
}

impl Program {
    fn compile(node: &Node) -> Program {
        let mut insts = Vec::new();
        emit(&mut insts, node);
        insts.push(Inst::Match);
        Program { insts }
    }

    pub(super) fn is_match(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        let len = chars.len();
        let look = |look: Look, pos: usize| match look {
            Look::BeginText => pos == 0,
            Look::EndText => pos == len,
            Look::WordBoundary | Look::NotWordBoundary => {
                let before = pos > 0 && is_word_char(chars[pos - 1]);
                let after = pos < len && is_word_char(chars[pos]);
                (before != after) == (look == Look::WordBoundary)
            }
        };
        self.simulate(&chars, &look).is_none()
    }

    /// Could the regexp match some text that starts with `prefix` and continues
    /// with at least one more character? Over-approximates: after the prefix,
    /// every character transition and every assertion except "beginning of text"
    /// is assumed to be satisfiable.
    pub(super) fn may_match_with_prefix(&self, prefix: &str) -> bool {
        let chars: Vec<char> = prefix.chars().collect();
        let len = chars.len();
        let look = |look: Look, pos: usize| match look {
            Look::BeginText => pos == 0,
            // The text goes on after the prefix.
            Look::EndText => false,
            Look::WordBoundary | Look::NotWordBoundary if pos < len => {
                let before = pos > 0 && is_word_char(chars[pos - 1]);
                let after = is_word_char(chars[pos]);
                (before != after) == (look == Look::WordBoundary)
            }
            // The next character is unknown.
            Look::WordBoundary | Look::NotWordBoundary => true,
        };
        let Some(threads) = self.simulate(&chars, &look) else {
            return true; // matched within the prefix: any continuation matches
        };
        let mut seen = vec![false; self.insts.len()];
        let mut stack: Vec<usize> = threads;
        while let Some(pc) = stack.pop() {
            if std::mem::replace(&mut seen[pc], true) {
                continue;
            }
            match &self.insts[pc] {
                Inst::Match => return true,
                Inst::Class(ranges) if ranges.is_empty() => {}
                Inst::Char(_) | Inst::Class(_) | Inst::AnyNotNl => stack.push(pc + 1),
                Inst::Jmp(t) => stack.push(*t),
                Inst::Split(a, b) => {
                    stack.push(*a);
                    stack.push(*b);
                }
                Inst::Look(Look::BeginText) => {}
                Inst::Look(_) => stack.push(pc + 1),
            }
        }
        false
    }

    /// Runs the VM over `chars`. `None` if a match was found (unanchored: a
    /// thread starts at every position); otherwise the threads alive at the end.
    fn simulate(&self, chars: &[char], look: &dyn Fn(Look, usize) -> bool) -> Option<Vec<usize>> {
        // `seen[pc] == pos` means pc is already in the list for position `pos`.
        let mut seen = vec![usize::MAX; self.insts.len()];
        let mut clist = Vec::new();
        let mut nlist = Vec::new();
        let mut stack = Vec::new();
        for pos in 0..=chars.len() {
            if self.add(&mut clist, &mut seen, &mut stack, pos, 0, look) {
                return None;
            }
            let Some(&c) = chars.get(pos) else { break };
            nlist.clear();
            for &pc in &clist {
                let consumes = match &self.insts[pc] {
                    Inst::Char(x) => *x == c,
                    Inst::Class(ranges) => class_contains(ranges, c),
                    Inst::AnyNotNl => c != '\n',
                    _ => false,
                };
                if consumes && self.add(&mut nlist, &mut seen, &mut stack, pos + 1, pc + 1, look) {
                    return None;
                }
            }
            std::mem::swap(&mut clist, &mut nlist);
        }
        Some(clist)
    }

    /// Adds `pc` and its epsilon closure at `pos` to `list`; `true` on reaching Match.
    fn add(
        &self,
        list: &mut Vec<usize>,
        seen: &mut [usize],
        stack: &mut Vec<usize>,
        pos: usize,
        pc: usize,
        look: &dyn Fn(Look, usize) -> bool,
    ) -> bool {
        stack.clear();
        stack.push(pc);
        while let Some(pc) = stack.pop() {
            if seen[pc] == pos {
                continue;
            }
            seen[pc] = pos;
            match &self.insts[pc] {
                Inst::Jmp(t) => stack.push(*t),
                Inst::Split(a, b) => {
                    stack.push(*b);
                    stack.push(*a);
                }
                Inst::Look(l) => {
                    if look(*l, pos) {
                        stack.push(pc + 1);
                    }
                }
                Inst::Match => return true,
                Inst::Char(_) | Inst::Class(_) | Inst::AnyNotNl => list.push(pc),
            }
        }
        false
    }
}

/// Appends code for `node`; control falls through to the next instruction.
fn emit(code: &mut Vec<Inst>, node: &Node) {
    match node {
        Node::Char(c) => code.push(Inst::Char(*c)),
        Node::Class(ranges) => code.push(Inst::Class(ranges.clone().into_boxed_slice())),
        Node::AnyNotNl => code.push(Inst::AnyNotNl),
        Node::Look(look) => code.push(Inst::Look(*look)),
        Node::Concat(items) => {
            for item in items {
                emit(code, item);
            }
        }
        Node::Alt(branches) => {
            let mut jumps = Vec::new();
            for (i, branch) in branches.iter().enumerate() {
                if i + 1 == branches.len() {
                    emit(code, branch);
                } else {
                    let split = code.len();
                    code.push(Inst::Split(split + 1, usize::MAX));
                    emit(code, branch);
                    jumps.push(code.len());
                    code.push(Inst::Jmp(usize::MAX));
                    code[split] = Inst::Split(split + 1, code.len());
                }
            }
            let end = code.len();
            for j in jumps {
                code[j] = Inst::Jmp(end);
            }
        }
        Node::Repeat(inner, Rep::Star) => {
            let split = code.len();
            code.push(Inst::Split(split + 1, usize::MAX));
            emit(code, inner);
            code.push(Inst::Jmp(split));
            code[split] = Inst::Split(split + 1, code.len());
        }
        Node::Repeat(inner, Rep::Plus) => {
            let start = code.len();
            emit(code, inner);
            code.push(Inst::Split(start, code.len() + 1));
        }
        Node::Repeat(inner, Rep::Quest) => {
            let split = code.len();
            code.push(Inst::Split(split + 1, usize::MAX));
            emit(code, inner);
            code[split] = Inst::Split(split + 1, code.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re_match(source: &str, text: &str) -> Result<bool, String> {
        parse_go_regexp(source).map(|node| Program::compile(&node).is_match(text))
    }

    #[test]
    fn regexp_source_matches_upstream_compile() {
        // Cases from upstream TestCompile (Linux column).
        let cases = [
            ("**", Kind::Suffix, ""),
            ("**/**", Kind::Regexp, "^(.*/)?.*$"),
            ("dir/**", Kind::Prefix, ""),
            ("**/dir", Kind::Suffix, ""),
            ("**/dir2/*", Kind::Regexp, "^(.*/)?dir2/[^/]*$"),
            ("**/dir2/**", Kind::Regexp, "^(.*/)?dir2/.*$"),
            ("**file", Kind::Suffix, ""),
            ("**/file*txt", Kind::Regexp, "^(.*/)?file[^/]*txt$"),
            ("**/**/*.txt", Kind::Regexp, "^(.*/)?(.*/)?[^/]*\\.txt$"),
            ("a**/*.txt", Kind::Regexp, "^a(.*/)?[^/]*\\.txt$"),
            ("a[b-d]e", Kind::Regexp, "^a[b-d]e$"),
            (".*", Kind::Regexp, "^\\.[^/]*$"),
            ("abc.def", Kind::Exact, ""),
            ("abc?def", Kind::Regexp, "^abc[^/]def$"),
            ("a\\\\", Kind::Regexp, "^a\\\\$"),
            ("a(b)c/def", Kind::Exact, ""),
            ("a.|)$(}+{bc", Kind::Exact, ""),
            ("a\\*b", Kind::Regexp, "^a\\*b$"),
        ];
        for (pattern, kind, re) in cases {
            let (k, source) = regexp_source(pattern);
            assert_eq!(k, kind, "{pattern}");
            if kind == Kind::Regexp {
                assert_eq!(source, re, "{pattern}");
            }
        }
    }

    #[test]
    fn glob_syntax_check_is_gos() {
        for bad in [
            "[", "a[", "[^", "[^bc", "\\", "a\\", "[]a]", "[-]", "[x-]", "[a-b-c]",
        ] {
            assert!(glob_match(bad, ".").is_err(), "{bad:?} must be rejected");
        }
        for good in [
            "[\\]a]",
            "[\\-]",
            "[x\\-]",
            "*",
            "a*b?c",
            "[Local-Only]",
            "[**]x",
            "\\d",
        ] {
            assert!(glob_match(good, ".").is_ok(), "{good:?} must be accepted");
        }
        assert_eq!(glob_match("a*b", "axxb"), Ok(true));
        assert_eq!(glob_match("a*b", "a/b"), Ok(false));
        assert_eq!(glob_match("a?b", "a☺b"), Ok(true));
    }

    #[test]
    fn go_regexp_quirks() {
        // `[*]` compiles to `^[[^/]*]$`: a class {'[','^','/'} repeated, then `]`.
        assert_eq!(re_match("^[[^/]*]$", "]"), Ok(true));
        assert_eq!(re_match("^[[^/]*]$", "[^/]"), Ok(true));
        assert_eq!(re_match("^[[^/]*]$", "*"), Ok(false));
        // POSIX classes, Perl classes, escapes.
        assert_eq!(re_match("^[[:alpha:]]$", "q"), Ok(true));
        assert_eq!(re_match("^[[:alpha:]]$", "1"), Ok(false));
        assert_eq!(re_match("^\\d$", "7"), Ok(true));
        assert_eq!(re_match("^\\D$", "7"), Ok(false));
        assert_eq!(re_match("^\\x41$", "A"), Ok(true));
        assert_eq!(re_match("^\\101$", "A"), Ok(true));
        assert_eq!(re_match("^\\pL$", "é"), Ok(true));
        assert_eq!(re_match("^\\PN$", "5"), Ok(false));
        assert_eq!(re_match("^a\\bb$", "ab"), Ok(false));
        assert_eq!(re_match("^[^/]*\\Qa$", "xa$"), Ok(true));
        assert_eq!(re_match("^(.*/)?x$", "a/b/x"), Ok(true));
        assert_eq!(re_match("^(.*/)?x$", "a\n/x"), Ok(false)); // `.` excludes \n
        assert_eq!(re_match("^[^/]$", "\n"), Ok(true)); // ClassNL
        assert_eq!(re_match("^a|b$", "bx"), Ok(false));
        assert_eq!(re_match("^a|b$", "ax"), Ok(true));
        assert_eq!(re_match("^(a|b)+$", "abba"), Ok(true));
        // Errors Go reports.
        for bad in [
            "^[Local-Only]$",
            "^\\m$",
            "^\\α$",
            "^\\1$",
            "^[\\b]$",
            "^[[:foo:]]$",
            "^\\pa$",
            "^[a$",
            "^a**$",
            "*a",
            "^(a$",
            "^a)$",
            "^\\",
        ] {
            assert!(re_match(bad, "x").is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn prefix_analysis() {
        let program = |pattern: &str| {
            let (kind, source) = regexp_source(pattern);
            assert_eq!(kind, Kind::Regexp, "{pattern}");
            Program::compile(&parse_go_regexp(&source).unwrap())
        };
        assert!(!program("*.md").may_match_with_prefix("vendor/"));
        assert!(program("vendor/*.md").may_match_with_prefix("vendor/"));
        assert!(program("*/keep").may_match_with_prefix("vendor/"));
        assert!(!program("*/keep").may_match_with_prefix("a/b/"));
        assert!(program("**/*.go").may_match_with_prefix("a/b/"));
        assert!(!program("src/**/*.go").may_match_with_prefix("vendor/"));
        assert!(program("src/**/*.go").may_match_with_prefix("src/x/"));
        assert!(program("s?c/a").may_match_with_prefix("src/"));
    }
}
