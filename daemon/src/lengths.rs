//! The rule that no function of the daemon is longer than [`MOST_LINES`] lines,
//! checked on the sources: every `fn` under `src` with a body (free, method, nested,
//! `const`, `unsafe`, `extern "C"`) counts from the line of its `fn` to its closing
//! brace, both included; its closures are its own lines. Tests are not counted: an
//! item or module under `#[cfg(test)]` is skipped, and so is a file that is such a
//! module (`#[cfg(test)] mod testing;`). A longer function is to be split along its
//! steps, each a named helper with a doc comment.
//!
//! The sources are read by the tokenizer of [`crate::sources`], not by searching the
//! text, so that a brace in a string, a raw string, a character or a comment is not
//! taken for one that opens or closes a body.

use std::path::{Path, PathBuf};

use crate::sources::{attribute, past_close, sources, test_paths, tokens, Attribute};

/// The most lines a function may have.
const MOST_LINES: usize = 80;

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

/// Reads the functions of one source's `text`, and its test modules' files.
fn read(text: &str) -> Read {
    let tokens = tokens(text);
    let mut read = Read::default();
    let mut i = 0;
    while i < tokens.len() {
        let word = |k: usize| tokens.get(k).map_or("", |t| t.text);
        let is_word = |k: usize| word(k).starts_with(|c: char| c.is_alphabetic() || c == '_');
        if let Some(attribute) = attribute(&tokens, i) {
            i = match attribute {
                Attribute::Test { past, file } => {
                    read.test_files.extend(file);
                    past
                }
                Attribute::Other { past, .. } => past,
            };
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
    let test_paths = test_paths(
        files
            .iter()
            .map(|(path, read)| (path.as_path(), read.test_files.as_slice())),
    );
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
