//! A JSON document read in one pass into a flat list of its values, each
//! with its place in the text: strings stay in the text (unescaped only
//! when read), and any value can be copied out as it was written. It
//! accepts exactly what RFC 8259 allows, nested at most [`MAX_DEPTH`] deep.
//!
//! [`crate::partial`] reads the admission review through it: one small,
//! non-generic reader, where serde's derived readers instantiate a parser
//! for every type read. In the server, where TLS, HTTP and the clients run
//! between requests, the code a request runs is fetched again for every
//! request, and it cost more than the instructions.

use std::borrow::Cow;

/// How deep arrays and objects may nest (serde_json refuses deeper than 128).
pub const MAX_DEPTH: usize = 100;

/// Values reserved for before reading (compact JSON has about one per eight
/// bytes); a larger document grows the list as it goes, so a body of long
/// strings is not given a list several times its size.
const MAX_RESERVED: usize = 4096;

/// A parsed document.
pub struct Doc<'a> {
    text: &'a str,
    nodes: Cow<'a, [Node]>,
}

/// A document that owns its text, kept to be read again.
pub struct Scanned {
    text: Box<str>,
    nodes: Box<[Node]>,
}

impl Scanned {
    /// `text` scanned, or `None` if it is not one JSON value.
    pub fn parse(text: String) -> Option<Scanned> {
        let nodes = Doc::parse(&text)?.nodes.into_owned().into_boxed_slice();
        Some(Scanned { text: text.into_boxed_str(), nodes })
    }

    pub fn doc(&self) -> Doc<'_> {
        Doc { text: &self.text, nodes: Cow::Borrowed(&self.nodes) }
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

#[derive(Clone, Copy)]
pub struct Node {
    kind: Kind,
    /// The value's text: `start..end`.
    start: u32,
    end: u32,
    /// The index after this value's last descendant.
    after: u32,
    /// For a member of an object, its key's text with the quotes.
    key_start: u32,
    key_end: u32,
    /// Whether the key, or the value (a string), is written with escapes.
    key_escaped: bool,
    escaped: bool,
}

/// A value of a [`Doc`].
#[derive(Clone, Copy)]
pub struct Val<'d, 'a> {
    doc: &'d Doc<'a>,
    index: u32,
}

impl<'a> Doc<'a> {
    /// The document, or `None` if `text` is not one JSON value (with
    /// whitespace around it) or nests deeper than [`MAX_DEPTH`].
    pub fn parse(text: &'a str) -> Option<Doc<'a>> {
        if text.len() >= u32::MAX as usize {
            return None;
        }
        let mut p =
            Parser { bytes: text.as_bytes(), at: 0, nodes: Vec::with_capacity((text.len() / 8 + 1).min(MAX_RESERVED)) };
        p.value(0, (0, 0, false))?;
        p.space();
        (p.at == p.bytes.len()).then_some(Doc { text, nodes: Cow::Owned(p.nodes) })
    }

    pub fn root(&self) -> Val<'_, 'a> {
        Val { doc: self, index: 0 }
    }

    /// The value [`Val::index`] gave, or `None` if there is none.
    pub fn get(&self, index: usize) -> Option<Val<'_, 'a>> {
        (index < self.nodes.len()).then_some(Val { doc: self, index: index as u32 })
    }
}

impl<'d, 'a> Val<'d, 'a> {
    fn node(&self) -> &'d Node {
        &self.doc.nodes[self.index as usize]
    }

    /// Where the value is in its document (see [`Doc::get`]).
    pub fn index(&self) -> usize {
        self.index as usize
    }

    pub fn kind(&self) -> Kind {
        self.node().kind
    }

    /// The value as it was written.
    pub fn raw(&self) -> &'a str {
        let n = self.node();
        &self.doc.text[n.start as usize..n.end as usize]
    }

    /// The elements of an array, or the values of an object's members.
    pub fn children(&self) -> impl Iterator<Item = Val<'d, 'a>> + use<'d, 'a> {
        let doc = self.doc;
        let (mut index, end) = match self.node().kind {
            Kind::Array | Kind::Object => (self.index + 1, self.node().after),
            _ => (0, 0),
        };
        std::iter::from_fn(move || {
            (index < end).then(|| {
                let v = Val { doc, index };
                index = doc.nodes[index as usize].after;
                v
            })
        })
    }

    /// An object's members, keys unescaped; none for any other value.
    pub fn members(&self) -> impl Iterator<Item = (Cow<'a, str>, Val<'d, 'a>)> + use<'d, 'a> {
        let object = self.kind() == Kind::Object;
        self.children().filter(move |_| object).map(|v| (v.key(), v))
    }

    /// The key of the member this value is, unescaped.
    fn key(&self) -> Cow<'a, str> {
        let n = self.node();
        let text = &self.doc.text[n.key_start as usize + 1..n.key_end as usize - 1];
        if n.key_escaped { unescape(text) } else { Cow::Borrowed(text) }
    }

    /// Whether this object gives a key twice (never, for another kind of value).
    pub fn repeats_a_key(&self) -> bool {
        if self.kind() != Kind::Object {
            return false;
        }
        // Each key's text sets one of 64 bits; only a key whose bit is set
        // already is compared with the ones before it. A key written with
        // escapes has other texts for the same key: those are all compared.
        let (mut seen, mut escapes) = (0u64, false);
        for (i, v) in self.children().enumerate() {
            let n = v.node();
            let key = &self.doc.text.as_bytes()[n.key_start as usize..n.key_end as usize];
            let bit = 1u64 << ((key.len() + 7 * usize::from(key[key.len() / 2])) % 64);
            escapes |= n.key_escaped;
            if (escapes || seen & bit != 0) && self.children().take(i).any(|earlier| earlier.same_key(&v)) {
                return true;
            }
            seen |= bit;
        }
        false
    }

    /// Whether this member's key is `other`'s.
    fn same_key(&self, other: &Val) -> bool {
        let (n, m) = (self.node(), other.node());
        if n.key_escaped || m.key_escaped {
            return self.key() == other.key();
        }
        self.doc.text[n.key_start as usize..n.key_end as usize]
            == other.doc.text[m.key_start as usize..m.key_end as usize]
    }

    /// A string's value, unescaped; `None` for any other value.
    pub fn str(&self) -> Option<Cow<'a, str>> {
        let raw = self.raw();
        let text = raw.get(1..raw.len().saturating_sub(1))?;
        match self.kind() {
            Kind::String if self.node().escaped => Some(unescape(text)),
            Kind::String => Some(Cow::Borrowed(text)),
            _ => None,
        }
    }

    pub fn bool(&self) -> Option<bool> {
        match self.raw() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }

    /// An integer written as one (no fraction or exponent), as serde reads it.
    pub fn int<T: std::str::FromStr>(&self) -> Option<T> {
        let raw = self.raw();
        (self.kind() == Kind::Number && !raw.contains(['.', 'e', 'E'])).then(|| raw.parse().ok()).flatten()
    }

    fn escaped(&self) -> bool {
        self.node().escaped
    }

    pub fn is_null(&self) -> bool {
        self.kind() == Kind::Null
    }
}

/// Whether `a` holds what `b` holds, as a typed reader would read both, or
/// stricter: members in any order, a `null` member as an absent one; strings
/// compared unescaped; numbers and literals as written. `false` whenever `a`
/// gives a key twice (serde refuses it), or has a member `b` has not.
pub fn same(a: Val, b: Val) -> bool {
    match (a.kind(), b.kind()) {
        (Kind::Object, Kind::Object) => same_as_union(a, &[b]),
        (Kind::Array, Kind::Array) => {
            let (mut x, mut y) = (a.children(), b.children());
            loop {
                match (x.next(), y.next()) {
                    (None, None) => return true,
                    (Some(v), Some(w)) if same(v, w) => {}
                    _ => return false,
                }
            }
        }
        // Equal text is an equal string (escapes included); else compare what they hold.
        (Kind::String, Kind::String) => a.raw() == b.raw() || ((a.escaped() || b.escaped()) && a.str() == b.str()),
        (x, y) => x == y && a.raw() == b.raw(),
    }
}

/// Whether the object `a` holds what the objects `parts` hold together (as
/// [`same`] compares; no key is in two of `parts`).
pub fn same_as_union(a: Val, parts: &[Val]) -> bool {
    let present = |v: &Val| v.children().filter(|v| !v.is_null()).count();
    a.kind() == Kind::Object
        && parts.iter().all(|p| p.kind() == Kind::Object)
        && !a.repeats_a_key()
        && present(&a) == parts.iter().map(present).sum::<usize>()
        && a.children().all(|v| v.is_null() || parts.iter().any(|p| p.children().any(|w| w.same_key(&v) && same(v, w))))
}

/// The characters of a string's text (without its quotes), which [`Doc::parse`] checked.
fn unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex = |chars: &mut std::str::Chars| {
                    let digits = chars.as_str().get(..4)?;
                    let n = u32::from_str_radix(digits, 16).ok()?;
                    chars.nth(3);
                    Some(n)
                };
                let n = hex(&mut chars).unwrap_or(0xfffd);
                let n = if (0xd800..0xdc00).contains(&n) {
                    chars.nth(1); // the `\u` of the low surrogate
                    let low = hex(&mut chars).unwrap_or(0xdc00);
                    0x10000 + ((n - 0xd800) << 10) + (low - 0xdc00)
                } else {
                    n
                };
                out.push(char::from_u32(n).unwrap_or('\u{fffd}'));
            }
            Some(c) => out.push(c), // `"`, `\` and `/`
            None => {}
        }
    }
    Cow::Owned(out)
}

struct Parser<'t> {
    bytes: &'t [u8],
    at: usize,
    nodes: Vec<Node>,
}

impl Parser<'_> {
    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// One value, with the key of the member it is (or `(0, 0, false)`):
    /// its text, and whether it has escapes.
    fn value(&mut self, depth: usize, key: (u32, u32, bool)) -> Option<()> {
        self.space();
        let index = self.nodes.len();
        let start = self.at;
        let kind = match self.peek()? {
            b'{' => Kind::Object,
            b'[' => Kind::Array,
            b'"' => Kind::String,
            b't' | b'f' => Kind::Bool,
            b'n' => Kind::Null,
            _ => Kind::Number,
        };
        self.nodes.push(Node {
            kind,
            start: start as u32,
            end: 0,
            after: 0,
            key_start: key.0,
            key_end: key.1,
            key_escaped: key.2,
            escaped: false,
        });
        let mut escaped = false;
        match kind {
            Kind::Object | Kind::Array if depth >= MAX_DEPTH => return None,
            Kind::Object => self.object(depth)?,
            Kind::Array => self.array(depth)?,
            Kind::String => escaped = self.string()?,
            Kind::Bool | Kind::Null => self.literal()?,
            Kind::Number => self.number()?,
        }
        let after = self.nodes.len() as u32;
        let node = &mut self.nodes[index];
        node.end = self.at as u32;
        node.after = after;
        node.escaped = escaped;
        Some(())
    }

    fn object(&mut self, depth: usize) -> Option<()> {
        self.at += 1;
        self.space();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            self.space();
            let key_start = self.at;
            if self.peek()? != b'"' {
                return None;
            }
            let escaped = self.string()?;
            let key = (key_start as u32, self.at as u32, escaped);
            self.space();
            if self.peek()? != b':' {
                return None;
            }
            self.at += 1;
            self.value(depth + 1, key)?;
            self.space();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        self.at += 1;
        self.space();
        if self.peek()? == b']' {
            self.at += 1;
            return Some(());
        }
        loop {
            self.value(depth + 1, (0, 0, false))?;
            self.space();
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A string token: no control characters, valid escapes, surrogates in
    /// pairs. Whether it has escapes.
    fn string(&mut self) -> Option<bool> {
        self.at += 1;
        let mut escaped = false;
        loop {
            // To the next `"`, `\` or control character, eight bytes at a time.
            while let Some(word) = self.bytes.get(self.at..self.at + 8) {
                let flagged = crate::json::escapes(u64::from_le_bytes(word.try_into().ok()?));
                if flagged != 0 {
                    self.at += (flagged.trailing_zeros() / 8) as usize;
                    break;
                }
                self.at += 8;
            }
            let b = self.peek()?;
            self.at += 1;
            match b {
                b'"' => return Some(escaped),
                0..=0x1f => return None,
                b'\\' => {
                    escaped = true;
                    let e = self.peek()?;
                    self.at += 1;
                    match e {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            let n = self.hex4()?;
                            if (0xdc00..0xe000).contains(&n) {
                                return None;
                            }
                            if (0xd800..0xdc00).contains(&n) {
                                if self.bytes.get(self.at..self.at + 2)? != b"\\u" {
                                    return None;
                                }
                                self.at += 2;
                                if !(0xdc00..0xe000).contains(&self.hex4()?) {
                                    return None;
                                }
                            }
                        }
                        _ => return None,
                    }
                }
                _ => {}
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.bytes.get(self.at..self.at + 4)?;
        if !digits.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        self.at += 4;
        u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    }

    fn literal(&mut self) -> Option<()> {
        let literal: &[u8] = match self.peek()? {
            b't' => b"true",
            b'f' => b"false",
            _ => b"null",
        };
        if !self.bytes[self.at..].starts_with(literal) {
            return None;
        }
        self.at += literal.len();
        Some(())
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_values_and_their_text() {
        let doc =
            Doc::parse(r#" {"a": [1, -2.5e3, "x\"y\u00e9\ud83d\ude00"], "b": {"c": null, "d": true}, "e\n": false} "#)
                .unwrap();
        let members: Vec<_> = doc.root().members().collect();
        let keys: Vec<&str> = members.iter().map(|(k, _)| &**k).collect();
        assert_eq!(keys, ["a", "b", "e\n"]);
        let a: Vec<_> = members[0].1.children().collect();
        assert_eq!(a.iter().map(|v| v.raw()).collect::<Vec<_>>(), ["1", "-2.5e3", r#""x\"y\u00e9\ud83d\ude00""#]);
        assert_eq!(a[0].int::<i32>(), Some(1));
        assert_eq!(a[1].int::<i32>(), None);
        assert_eq!(a[2].str().as_deref(), Some("x\"yé😀"));
        assert_eq!(members[1].1.raw(), r#"{"c": null, "d": true}"#);
        let b: Vec<_> = members[1].1.members().map(|(k, v)| (k.into_owned(), v.kind())).collect();
        assert_eq!(b, [("c".to_string(), Kind::Null), ("d".to_string(), Kind::Bool)]);
        assert_eq!(members[2].1.bool(), Some(false));
        assert!(doc.root().str().is_none() && members[0].1.members().next().is_none());
    }

    #[test]
    fn finds_a_key_given_twice_however_written() {
        let repeats = |text: &str| Doc::parse(text).unwrap().root().repeats_a_key();
        let many: String = (0..40).map(|i| format!(r#""k{i}":{i},"#)).collect();
        assert!(!repeats(r#"{"a": 1, "b": 2}"#) && !repeats("{}") && !repeats(&format!("{{{many}\"z\":0}}")));
        assert!(repeats(r#"{"a": 1, "a": 2}"#) && repeats(&format!("{{{many}\"k7\":0}}")));
        assert!(repeats(r#"{"\u0061": 1, "a": 2}"#) && repeats(r#"{"a": 1, "\u0061": 2}"#));
        // Other values have no keys (an array's elements once panicked here).
        assert!(!repeats(r#"[{"a": 1}, {"a": 1}]"#) && !repeats("[1, 1]") && !repeats("[]") && !repeats(r#""a""#));
    }

    #[test]
    fn same_is_equality_of_what_is_held() {
        let same = |a: &str, b: &str| super::same(Doc::parse(a).unwrap().root(), Doc::parse(b).unwrap().root());
        assert!(same(r#"{"a": 1, "b": [true, "x"], "c": null}"#, r#"{"b": [true, "\u0078"], "a": 1}"#));
        assert!(same("{}", r#"{"a": null}"#));
        assert!(!same(r#"{"a": 1}"#, r#"{"a": 2}"#));
        assert!(!same(r#"{"a": 1, "b": 2}"#, r#"{"a": 1}"#), "a member b has not");
        assert!(!same(r#"{"a": 1}"#, r#"{"a": 1, "b": 2}"#), "a member a has not");
        assert!(!same(r#"{"a": 1, "a": 1}"#, r#"{"a": 1}"#), "a key given twice");
        assert!(!same(r#"{"a": null, "a": 1}"#, r#"{"a": 1}"#), "a key given twice, once null");
        assert!(!same("[1, 2]", "[2, 1]") && !same("[1]", "[1, 1]") && !same("[]", "{}"));
        assert!(!same("3", "3.0") && !same("3", r#""3""#) && !same("true", "false") && same("null", "null"));
        assert!(!same(r#"{"a": []}"#, "{}"), "an empty list is not an absent one");

        let union = |a: &str, b: &str, c: &str| {
            let (a, b, c) = (Doc::parse(a).unwrap(), Doc::parse(b).unwrap(), Doc::parse(c).unwrap());
            same_as_union(a.root(), &[b.root(), c.root()])
        };
        assert!(union(r#"{"a": 1, "b": 2}"#, r#"{"b": 2}"#, r#"{"a": 1}"#));
        assert!(!union(r#"{"a": 1}"#, r#"{"b": 2}"#, r#"{"a": 1}"#), "b missing");
        assert!(!union(r#"{"a": 1, "b": 2, "c": 3}"#, r#"{"b": 2}"#, r#"{"a": 1}"#), "c in neither");
        assert!(!union(r#"{"a": 1, "b": 3}"#, r#"{"b": 2}"#, r#"{"a": 1}"#));
        assert!(!union("[]", "{}", "{}"));
    }

    /// What serde_json accepts, this accepts, and the reverse: numbers,
    /// literals, strings and their escapes, separators, nesting.
    #[test]
    fn accepts_what_serde_json_accepts() {
        let deep_ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        let too_deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let cases: &[&str] = &[
            "{}",
            "[]",
            "0",
            "-0",
            "1.5",
            "1e5",
            "1E+5",
            "-1.0e-5",
            r#""""#,
            "true",
            "null",
            " [ 1 , 2 ] ",
            r#"{"a":{"b":[{},[]]}}"#,
            r#""\u0000""#,
            r#""\ud83d\ude00""#,
            r#""\/""#,
            "",
            " ",
            "{",
            "}",
            "[1,]",
            "[,1]",
            "{\"a\":1,}",
            "{\"a\"}",
            "{\"a\" 1}",
            "{1:2}",
            "01",
            "1.",
            ".5",
            "1e",
            "+1",
            "-",
            "--1",
            "0x1",
            "NaN",
            "Infinity",
            "tru",
            "nul",
            "truex",
            "[1 2]",
            "\"a",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"\u{1}\"",
            "\"\t\"",
            "1 2",
            "[] []",
            "{\"a\":1}x",
            &deep_ok,
            &too_deep,
        ];
        for case in cases {
            let ours = Doc::parse(case).is_some();
            let theirs = serde_json::from_str::<serde_json::Value>(case).is_ok();
            // Deeper than MAX_DEPTH is refused here and read by serde_json (up to 128).
            if *case == too_deep {
                assert!(!ours && theirs);
                continue;
            }
            assert_eq!(ours, theirs, "{case:?}");
        }
    }
}
