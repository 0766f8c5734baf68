//! Physical lines → logical lines.
//!
//! A Dockerfile instruction may span several physical lines joined by the
//! escape character. The joined text is what instructions are parsed from,
//! but errors must point at the physical line and column, so a
//! [`LogicalLine`] remembers where each piece of its text came from.

use crate::span::{Position, Span};

/// One line of the file as read: `text` without its line ending, `full` with it.
pub(crate) struct PhysicalLine<'a> {
    pub number: u32,
    pub text: &'a str,
    pub full: &'a str,
}

/// Longest line BuildKit's scanner accepts (its buffer is 64 KiB, newline included).
pub(crate) const MAX_LINE_BYTES: usize = 65535;

pub(crate) fn physical_lines(src: &str) -> Vec<PhysicalLine<'_>> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    src.split_inclusive('\n')
        .enumerate()
        .map(|(i, full)| PhysicalLine {
            number: i as u32 + 1,
            // Go's bytes.TrimRight(line, "\r\n"): any run of CR/LF at the end.
            text: full.trim_end_matches(['\r', '\n']),
            full,
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    /// Byte offset in the logical text where this piece starts.
    offset: usize,
    line: u32,
    /// Column (1-based, in characters) of the piece's first character.
    column: u32,
}

/// The text of one instruction with continuations joined.
#[derive(Debug, Default)]
pub(crate) struct LogicalLine {
    pub text: String,
    segments: Vec<Segment>,
}

impl LogicalLine {
    /// Appends `piece`, which starts at `line:column` in the file.
    pub fn push(&mut self, piece: &str, line: u32, column: u32) {
        self.segments.push(Segment {
            offset: self.text.len(),
            line,
            column,
        });
        self.text.push_str(piece);
    }

    /// Where byte `offset` of the logical text is in the file.
    pub fn position(&self, offset: usize) -> Position {
        let idx = self
            .segments
            .partition_point(|s| s.offset <= offset)
            .saturating_sub(1);
        self.position_in(idx, offset)
    }

    /// Like [`position`](Self::position) but for an exclusive end: an offset
    /// at a joint belongs to the end of the earlier piece.
    pub fn end_position(&self, offset: usize) -> Position {
        let idx = self
            .segments
            .partition_point(|s| s.offset < offset)
            .saturating_sub(1);
        self.position_in(idx, offset)
    }

    fn position_in(&self, idx: usize, offset: usize) -> Position {
        match self.segments.get(idx) {
            Some(seg) => {
                let from = seg.offset.min(offset);
                let chars = self.text.get(from..offset).map_or(0, |s| s.chars().count());
                Position::new(seg.line, seg.column + chars as u32)
            }
            None => Position::new(1, 1),
        }
    }

    pub fn span(&self, start: usize, end: usize) -> Span {
        let from = self.position(start);
        // Empty pieces (a continuation line holding only the escape) share an
        // offset with their neighbours; never let the end precede the start.
        let to = self.end_position(end.max(start)).max(from);
        Span::new(from, to)
    }

    /// The byte offset of `inner`, which must be a slice of `self.text`.
    pub fn offset_of(&self, inner: &str) -> usize {
        let base = self.text.as_ptr() as usize;
        let at = inner.as_ptr() as usize;
        debug_assert!(at >= base && at + inner.len() <= base + self.text.len());
        at.saturating_sub(base).min(self.text.len())
    }

    /// The span of `inner`, a slice of `self.text`.
    pub fn span_of(&self, inner: &str) -> Span {
        let start = self.offset_of(inner);
        self.span(start, start + inner.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_offsets_back_to_physical_lines() {
        let mut l = LogicalLine::default();
        l.push("RUN a ", 3, 1);
        l.push("  b", 4, 1);
        assert_eq!(l.position(0), Position::new(3, 1));
        assert_eq!(l.position(4), Position::new(3, 5));
        assert_eq!(l.position(6), Position::new(4, 1));
        assert_eq!(l.position(8), Position::new(4, 3));
        assert_eq!(l.end_position(6), Position::new(3, 7));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let mut l = LogicalLine::default();
        l.push("ENV a=é b", 1, 3);
        let b = l.text.find('b').unwrap();
        assert_eq!(l.position(b), Position::new(1, 11));
    }

    #[test]
    fn strips_bom_and_crlf() {
        let lines = physical_lines("\u{feff}FROM x\r\nRUN y\r\r\n");
        assert_eq!(lines[0].text, "FROM x");
        assert_eq!(lines[1].text, "RUN y");
        assert_eq!(lines[1].full, "RUN y\r\r\n");
    }
}
