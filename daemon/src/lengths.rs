//! The rule that no function of the daemon is longer than [`MOST_LINES`] lines,
//! checked on the sources: every `fn` under `src` with a body (free, method, nested,
//! `const`, `unsafe`, `extern "C"`) counts from the line of its `fn` to its closing
//! brace, both included; its closures are its own lines. Tests are not counted: an
//! item or module under `#[cfg(test)]` is skipped, and so is a file that is such a
//! module (`#[cfg(test)] mod testing;`). A longer function is to be split along its
//! steps, each a named helper with a doc comment.
//!
//! The sources are read by a small tokenizer, not by searching the text, so that a
//! brace in a string, a raw string, a character or a comment is not taken for one
//! that opens or closes a body.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

/// The most lines a function may have.
const MOST_LINES: usize = 80;

/// One token of Rust source: a word (identifier, keyword or number) or one
/// punctuation character, with the line it is on. Strings, characters, comments and
/// whitespace make no token.
#[derive(Debug)]
struct Token<'a> {
    text: &'a str,
    line: usize,
}

/// The tokens of `text`, skipping comments (nested block comments too), strings
/// (with escapes, byte and C strings, raw strings with any number of `#`), character
/// literals and whitespace; a lifetime's quote is dropped and its name kept as a word.
fn tokens(text: &str) -> Vec<Token<'_>> {
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
                while i < chars.len() && at(i) != '\n' {
                    i += 1;
                }
            }
            '/' if at(i + 1) == '*' => {
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

/// A function with a body, as read from a source.
#[derive(Debug, PartialEq)]
struct Function {
    name: String,
    /// The line of its `fn`.
    line: usize,
    /// Its lines, from that of its `fn` to that of its closing brace.
    lines: usize,
}

/// What one source holds outside its tests.
#[derive(Debug, Default)]
struct Read {
    /// Every function with a body, nested ones too, in source order.
    functions: Vec<Function>,
    /// The modules it declares under `#[cfg(test)]` whose code is in a file of
    /// their own (`#[cfg(test)] mod testing;`).
    test_files: Vec<String>,
}

/// The index just past the token that closes the bracket opened at `open`
/// (`{`, `(` or `[`), or the end.
fn past_close(tokens: &[Token<'_>], open: usize) -> usize {
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

/// Reads the functions of one source's `text`, and its test modules' files.
fn read(text: &str) -> Read {
    let tokens = tokens(text);
    let mut read = Read::default();
    let mut i = 0;
    while i < tokens.len() {
        let word = |k: usize| tokens.get(k).map_or("", |t| t.text);
        let is_word = |k: usize| word(k).starts_with(|c: char| c.is_alphabetic() || c == '_');
        if word(i) == "#" {
            let inner = word(i + 1) == "!";
            let open = if inner { i + 2 } else { i + 1 };
            if word(open) != "[" {
                i += 1;
                continue;
            }
            let after = past_close(&tokens, open);
            if !is_cfg_test(&tokens, open) {
                i = after;
                continue;
            }
            let end = past_item(&tokens, after, inner);
            let item: Vec<&str> = tokens[after..end].iter().map(|t| t.text).collect();
            if let [.., "mod", name, ";"] = item.as_slice() {
                read.test_files.push(name.to_string());
            }
            i = end;
        } else if word(i) == "fn" && is_word(i + 1) {
            let mut k = i + 2;
            let mut depth = 0usize;
            while k < tokens.len() {
                match word(k) {
                    "(" | "[" => depth += 1,
                    ")" | "]" => depth = depth.saturating_sub(1),
                    "{" | ";" if depth == 0 => break,
                    _ => {}
                }
                k += 1;
            }
            if word(k) == "{" {
                let close = past_close(&tokens, k) - 1;
                read.functions.push(Function {
                    name: word(i + 1).to_owned(),
                    line: tokens[i].line,
                    lines: tokens[close].line - tokens[i].line + 1,
                });
            }
            // On into the body: its nested functions count on their own.
            i += 2;
        } else {
            i += 1;
        }
    }
    read
}

/// Every `.rs` file under `dir`, in name order.
fn sources(dir: &Path) -> Vec<PathBuf> {
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

/// The functions over [`MOST_LINES`] under `src`, each as `file: fn name: lines`,
/// with how many functions were read in all.
fn too_long(src: &Path) -> (Vec<String>, usize) {
    let files: Vec<(PathBuf, Read)> = sources(src)
        .into_iter()
        .map(|path| {
            let read = read(&std::fs::read_to_string(&path).unwrap());
            (path, read)
        })
        .collect();
    // A test module's file is `x.rs` or `x/mod.rs` in the directory of the module
    // that declares it: that of `lib.rs`, `main.rs` and `mod.rs` is their own; that
    // of `y.rs` is `y/`.
    let mut test_paths = BTreeSet::new();
    for (path, read) in &files {
        let dir = match path.file_stem().and_then(|s| s.to_str()) {
            Some("lib" | "main" | "mod") => path.parent().unwrap().to_path_buf(),
            _ => path.with_extension(""),
        };
        for name in &read.test_files {
            test_paths.insert(dir.join(format!("{name}.rs")));
            test_paths.insert(dir.join(name));
        }
    }
    let mut long = Vec::new();
    let mut count = 0;
    for (path, read) in &files {
        if test_paths.iter().any(|t| path.starts_with(t)) {
            continue;
        }
        count += read.functions.len();
        for function in &read.functions {
            if function.lines > MOST_LINES {
                long.push(format!(
                    "{}: fn {} (line {}): {} lines",
                    path.strip_prefix(src).unwrap().display(),
                    function.name,
                    function.line,
                    function.lines
                ));
            }
        }
    }
    (long, count)
}

#[test]
fn no_daemon_function_is_over_80_lines() {
    let (long, count) = too_long(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(
        count > 500,
        "only {count} functions read: the reader misses some"
    );
    assert!(
        long.is_empty(),
        "functions over {MOST_LINES} lines: split each into named steps:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_reader_sees_through_strings_comments_and_tests() {
    let filler = "    let _ = 1;\n".repeat(80);
    let text = format!(
        r##"//! A sample.
pub(crate) const fn short() -> u8 {{ b'}}' }}
/// A long one; its braces in strings, characters and comments close nothing.
pub(crate) unsafe extern "C" fn long<'a>(x: &'a [u8; 2]) {{
    let _ = "}}{{\"}}";
    let _ = r#"}}"{{"#;
    let _ = ['}}', '\'', '\u{{7b}}'];
    // }}
    /* }} /* }} */ }} */
    let _ = |y: u8| {{ y }};
    fn nested() {{
    }}
{filler}}}
impl S {{
    fn method(&self) -> &str {{
        "{{,.[\""
    }}
}}
trait T {{
    fn declared(&self);
}}
#[cfg(test)]
mod tests {{
    fn long_test() {{
{filler}    }}
}}
#[cfg(test)]
mod testing;
#[cfg(not(test))]
fn kept() {{}}
"##
    );
    let read = read(&text);
    let found: Vec<(&str, usize, usize)> = read
        .functions
        .iter()
        .map(|f| (f.name.as_str(), f.line, f.lines))
        .collect();
    assert_eq!(
        found,
        [
            ("short", 2, 1),
            ("long", 4, 90),
            ("nested", 11, 2),
            ("method", 95, 3),
            ("kept", 190, 1),
        ]
    );
    assert_eq!(read.test_files, ["testing"]);
}

#[test]
fn the_gate_fails_on_a_long_function_and_skips_test_files() {
    let src = std::env::temp_dir().join(format!("flaskbbd-lengths-{}", std::process::id()));
    std::fs::create_dir_all(src.join("testing")).unwrap();
    let long = format!("fn long() {{\n{}}}\n", "    step();\n".repeat(80));
    std::fs::write(src.join("lib.rs"), "#[cfg(test)]\nmod testing;\nmod a;\n").unwrap();
    std::fs::write(src.join("a.rs"), &long).unwrap();
    std::fs::write(src.join("testing/mod.rs"), &long).unwrap();
    let (found, count) = too_long(&src);
    std::fs::remove_dir_all(&src).unwrap();
    assert_eq!(found, ["a.rs: fn long (line 1): 82 lines"]);
    assert_eq!(count, 1);
}
