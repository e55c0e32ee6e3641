//! The daemon's sources as its source gates read them ([`crate::lengths`],
//! [`crate::doc_gate`]): a small Rust tokenizer, not a search of the text, so that a
//! brace, a `pub(crate)` or a `///` in a string, a raw string, a character or a
//! comment is not taken for code; and what is test code, skipped by every gate (an
//! item or module under `#[cfg(test)]`, and a file that is such a module).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

/// One token of Rust source: a word (identifier, keyword or number), one
/// punctuation character, or a doc comment, with the line it is on. Strings,
/// characters, other comments and whitespace make no token.
#[derive(Debug)]
pub(crate) struct Token<'a> {
    /// The token's text: a word, a punctuation character, or `///` or `//!` for
    /// an outer or inner doc comment (whose text is not kept).
    pub(crate) text: &'a str,
    /// The line it starts on, from 1.
    pub(crate) line: usize,
}

/// The tokens of `text`, skipping comments (nested block comments too), strings
/// (with escapes, byte and C strings, raw strings with any number of `#`), character
/// literals and whitespace; a lifetime's quote is dropped and its name kept as a word.
/// A doc comment is one token, `///` for an outer one (`///`, `/**`) and `//!` for
/// an inner one (`//!`, `/*!`); `////` and `/***` are plain comments.
pub(crate) fn tokens(text: &str) -> Vec<Token<'_>> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let at = |i: usize| chars.get(i).map_or('\0', |c| c.1);
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    // Moves `i` past the string whose opening quote is at `open`, ended by a quote
    // then `hashes` `#`s; escapes count only in a string that is not raw.
    let skip_string = |open: usize, hashes: usize, raw: bool, line: &mut usize| {
        let mut k = open + 1;
        while k < chars.len() {
            match at(k) {
                '\\' if !raw => {
                    if at(k + 1) == '\n' {
                        *line += 1;
                    }
                    k += 2;
                }
                '"' if (1..=hashes).all(|h| at(k + h) == '#') => return k + 1 + hashes,
                c => {
                    if c == '\n' {
                        *line += 1;
                    }
                    k += 1;
                }
            }
        }
        k
    };
    while i < chars.len() {
        let (start, c) = chars[i];
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            c if c.is_whitespace() => i += 1,
            '/' if at(i + 1) == '/' => {
                if at(i + 2) == '!' {
                    out.push(Token { text: "//!", line });
                } else if at(i + 2) == '/' && at(i + 3) != '/' {
                    out.push(Token { text: "///", line });
                }
                while i < chars.len() && at(i) != '\n' {
                    i += 1;
                }
            }
            '/' if at(i + 1) == '*' => {
                if at(i + 2) == '!' {
                    out.push(Token { text: "//!", line });
                } else if at(i + 2) == '*' && !matches!(at(i + 3), '*' | '/') {
                    out.push(Token { text: "///", line });
                }
                let mut depth = 1;
                i += 2;
                while depth > 0 && i < chars.len() {
                    if at(i) == '/' && at(i + 1) == '*' {
                        depth += 1;
                        i += 2;
                    } else if at(i) == '*' && at(i + 1) == '/' {
                        depth -= 1;
                        i += 2;
                    } else {
                        if at(i) == '\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                }
            }
            '"' => i = skip_string(i, 0, false, &mut line),
            '\'' if at(i + 1) == '\\' => {
                // An escaped character: '\'', '\\', '\n', '\u{7f}'.
                i += 3;
                while i < chars.len() && at(i) != '\'' {
                    i += 1;
                }
                i += 1;
            }
            '\'' if at(i + 2) == '\'' => i += 3,
            '\'' => i += 1,
            c if c.is_alphanumeric() || c == '_' => {
                let mut j = i;
                while at(j).is_alphanumeric() || at(j) == '_' {
                    j += 1;
                }
                let end = chars.get(j).map_or(text.len(), |c| c.0);
                let word = &text[start..end];
                let hashes = (j..).take_while(|&k| at(k) == '#').count();
                if matches!(word, "r" | "br" | "cr") && at(j + hashes) == '"' {
                    i = skip_string(j + hashes, hashes, true, &mut line);
                } else if matches!(word, "b" | "c") && at(j) == '"' {
                    i = skip_string(j, 0, false, &mut line);
                } else if word == "r" && hashes == 1 {
                    // A raw identifier, `r#type`: the word after the `#`.
                    i = j + 1;
                } else {
                    out.push(Token { text: word, line });
                    i = j;
                }
            }
            c => {
                out.push(Token {
                    text: &text[start..start + c.len_utf8()],
                    line,
                });
                i += 1;
            }
        }
    }
    out
}

/// The index just past the token that closes the bracket opened at `open`
/// (`{`, `(` or `[`), or the end.
pub(crate) fn past_close(tokens: &[Token<'_>], open: usize) -> usize {
    let mut depth = 0usize;
    for (k, token) in tokens.iter().enumerate().skip(open) {
        match token.text {
            "{" | "(" | "[" => depth += 1,
            "}" | ")" | "]" => {
                depth -= 1;
                if depth == 0 {
                    return k + 1;
                }
            }
            _ => {}
        }
    }
    tokens.len()
}

/// The index just past the item that starts at `from`: past its `;` or its closing
/// brace, whichever ends it at its own depth; or, for an inner attribute
/// (`inner`), past the rest of the enclosing block; either stops before a bracket
/// that closes one opened before `from`.
fn past_item(tokens: &[Token<'_>], from: usize, inner: bool) -> usize {
    let mut depth = 0usize;
    for (k, token) in tokens.iter().enumerate().skip(from) {
        match token.text {
            "{" | "(" | "[" => depth += 1,
            "}" | ")" | "]" if depth == 0 => return k,
            "}" if depth == 1 && !inner => return k + 1,
            "}" | ")" | "]" => depth -= 1,
            ";" if depth == 0 && !inner => return k + 1,
            _ => {}
        }
    }
    tokens.len()
}

/// Whether the attribute whose `[` is at `open` is `cfg(test)`.
fn is_cfg_test(tokens: &[Token<'_>], open: usize) -> bool {
    let words: Vec<&str> = tokens[open..past_close(tokens, open)]
        .iter()
        .map(|t| t.text)
        .collect();
    words == ["[", "cfg", "(", "test", ")", "]"]
}

/// Every `.rs` file under `dir`, in name order.
pub(crate) fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                todo.push(entry.unwrap().path());
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// What an attribute is, for a gate walking a source's tokens.
#[derive(Debug, PartialEq)]
pub(crate) enum Attribute {
    /// `#[cfg(test)]` (or `#![cfg(test)]`): the item it covers (or the rest of the
    /// block) is test code, ending just before `past`; `file` is the module named by
    /// a `mod name;` item, whose file is then test code too.
    Test {
        /// The index just past the test code.
        past: usize,
        /// The name of the module declared by `mod name;`, if the item is one.
        file: Option<String>,
    },
    /// Any other attribute, ending just before `past`; `doc` says whether it is a
    /// doc comment written as one (`#[doc = ...]`).
    Other {
        /// The index just past its `]`.
        past: usize,
        /// Whether it is `#[doc = ...]`.
        doc: bool,
    },
}

/// The attribute whose `#` is at `at`, or `None` if no attribute starts there.
pub(crate) fn attribute(tokens: &[Token<'_>], at: usize) -> Option<Attribute> {
    let word = |k: usize| tokens.get(k).map_or("", |t| t.text);
    if word(at) != "#" {
        return None;
    }
    let inner = word(at + 1) == "!";
    let open = if inner { at + 2 } else { at + 1 };
    if word(open) != "[" {
        return None;
    }
    let after = past_close(tokens, open);
    if !is_cfg_test(tokens, open) {
        let doc = word(open + 1) == "doc" && word(open + 2) == "=";
        return Some(Attribute::Other { past: after, doc });
    }
    let end = past_item(tokens, after, inner);
    let item: Vec<&str> = tokens[after..end].iter().map(|t| t.text).collect();
    let file = match item.as_slice() {
        [.., "mod", name, ";"] => Some(name.to_string()),
        _ => None,
    };
    Some(Attribute::Test { past: end, file })
}

/// The directory holding the files of the modules `path` declares: that of
/// `lib.rs`, `main.rs` and `mod.rs` is their own; that of `y.rs` is `y/`.
pub(crate) fn module_dir(path: &Path) -> PathBuf {
    match path.file_stem().and_then(|s| s.to_str()) {
        Some("lib" | "main" | "mod") => path.parent().unwrap().to_path_buf(),
        _ => path.with_extension(""),
    }
}

/// The paths of test code among sources: for each source's path and the modules it
/// declares under `#[cfg(test)]` with a file of their own, that file (`x.rs`) and
/// directory (`x/`, with `x/mod.rs`). A source is test code when it starts with one.
pub(crate) fn test_paths<'a>(
    declared: impl IntoIterator<Item = (&'a Path, &'a [String])>,
) -> BTreeSet<PathBuf> {
    let mut paths = BTreeSet::new();
    for (path, names) in declared {
        let dir = module_dir(path);
        for name in names {
            paths.insert(dir.join(format!("{name}.rs")));
            paths.insert(dir.join(name));
        }
    }
    paths
}

#[test]
fn doc_comments_are_tokens_and_other_comments_are_not() {
    let text = "//! Inner.\n/*! Inner. */\n/// Outer.\n/** Outer. */\n//// Plain.\n/*** Plain. */\n/**/\n// Plain.\nfn f() {}\n";
    let found: Vec<(&str, usize)> = tokens(text).iter().map(|t| (t.text, t.line)).collect();
    assert_eq!(
        found,
        [
            ("//!", 1),
            ("//!", 2),
            ("///", 3),
            ("///", 4),
            ("fn", 9),
            ("f", 9),
            ("(", 9),
            (")", 9),
            ("{", 9),
            ("}", 9),
        ]
    );
}
