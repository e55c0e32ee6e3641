//! The rule that every item the daemon shares between its modules has a doc comment,
//! checked on the sources, where the `missing_docs` lint does not look (it sees only
//! what a crate exports, and the daemon's library exports little; clippy's
//! `missing_docs_in_private_items` would also want every private helper).
//!
//! Under `daemon/src` and `daemon/bcrypt/src`, outside tests (an item or module under
//! `#[cfg(test)]`, or a file that is such a module):
//!
//! - every item declared `pub(crate)`, `pub(super)` or `pub(in ...)` (`fn`,
//!   `struct`, `enum`, `union`, `trait`, `type`, `const`, `static`, `mod`, and
//!   fields) has a doc comment: `///`, `/** */` or `#[doc = ...]`, other attributes
//!   between it and the item allowed. A `mod x;` is documented by the `//!` its file
//!   starts with, an inline `mod x { ... }` by a `//!` it starts with. `use` is not
//!   an item to document (nor does `missing_docs` want it);
//! - every variant of such an enum has one too (a variant cannot be declared
//!   `pub(crate)` itself: it is as visible as its enum, as `missing_docs` sees it);
//! - every source file, test files too, starts with a `//!` module doc.
//!
//! Items written in a `macro_rules!` body are read as they are written: a
//! `pub(crate) fn run` there needs its `///` in the body, and a variant written
//! `#[doc = $doc] $hook` is documented by its `#[doc]` (what `$doc` holds is the
//! macro's caller's business: the hook table's rows each carry one). An item whose
//! visibility is a fragment (`$vis fn`) is not seen; the daemon has none.
//!
//! The sources are read by the tokenizer of [`crate::sources`], so a `pub(crate) fn`
//! or a `///` in a string or a comment is not taken for one.

use std::path::{Path, PathBuf};

use crate::sources::{attribute, module_dir, past_close, sources, tokens, Attribute, Token};

/// The keywords that start an item after its visibility, and may name it.
const ITEM_KINDS: &[&str] = &[
    "fn", "struct", "enum", "union", "trait", "type", "const", "static", "mod", "use",
];

/// What one source's tokens say about its documentation.
#[derive(Debug, Default)]
struct Read {
    /// Whether its first token is a `//!` doc.
    module_doc: bool,
    /// Its undocumented items outside tests, each as its line and what it is
    /// (`fn name`, `field name`, `variant name`...).
    missing: Vec<(usize, String)>,
    /// Its `pub(crate) mod x;` items without a doc comment of their own, each as its
    /// line and `x`: documented if `x`'s file starts with `//!`.
    file_modules: Vec<(usize, String)>,
    /// The modules it declares under `#[cfg(test)]` with a file of their own.
    test_files: Vec<String>,
    /// How many restricted-visibility items and variants it checked.
    checked: usize,
}

/// The word at `k`, or `""` past the end.
fn word<'a>(tokens: &[Token<'a>], k: usize) -> &'a str {
    tokens.get(k).map_or("", |t| t.text)
}

/// A name at `k`: a word, or a macro fragment (`$name`) as one; with the index
/// past it.
fn name_at(tokens: &[Token<'_>], k: usize) -> (String, usize) {
    if word(tokens, k) == "$" {
        (format!("${}", word(tokens, k + 1)), k + 2)
    } else {
        (word(tokens, k).to_owned(), k + 1)
    }
}

/// Whether the tokens at `k` are a restricted visibility: `pub(crate)`,
/// `pub(super)`, `pub(self)` or `pub(in path)`.
fn is_restricted(tokens: &[Token<'_>], k: usize) -> bool {
    word(tokens, k) == "pub"
        && word(tokens, k + 1) == "("
        && matches!(word(tokens, k + 2), "crate" | "super" | "self" | "in")
}

/// The item after a visibility that ends at `k`: what it is (`fn name`,
/// `field name`...), its kind keyword (`"field"` for a field), and the index past
/// its name.
fn item_at(tokens: &[Token<'_>], mut k: usize) -> (String, &'static str, usize) {
    // Qualifiers: `const fn`, `async fn`, `unsafe fn`, `unsafe trait`, `extern "C"
    // fn` (the ABI string makes no token), `safe fn`.
    while matches!(word(tokens, k), "async" | "unsafe" | "extern" | "safe")
        || (word(tokens, k) == "const"
            && matches!(word(tokens, k + 1), "fn" | "unsafe" | "async" | "extern"))
    {
        k += 1;
    }
    let keyword = word(tokens, k);
    if let Some(&kind) = ITEM_KINDS.iter().find(|&&kind| kind == keyword) {
        k += 1;
        if kind == "static" && word(tokens, k) == "mut" {
            k += 1;
        }
        let (name, past) = name_at(tokens, k);
        return (format!("{kind} {name}"), kind, past);
    }
    let (name, past) = name_at(tokens, k);
    if word(tokens, past) == ":" && word(tokens, past + 1) != ":" {
        (format!("field {name}"), "field", past)
    } else {
        (format!("tuple field of type {name}"), "field", k)
    }
}

/// The variants of the enum whose body's `{` is at `open`, each as its line, its
/// name and whether it has a doc comment. A macro repetition around them
/// (`$( ... )*`) is seen through.
fn variants(tokens: &[Token<'_>], open: usize) -> Vec<(usize, String, bool)> {
    let close = past_close(tokens, open) - 1;
    let mut found = Vec::new();
    let (mut k, mut documented) = (open + 1, false);
    while k < close {
        if let Some(attribute) = attribute(tokens, k) {
            k = match attribute {
                Attribute::Test { past, .. } => past,
                Attribute::Other { past, doc } => {
                    documented |= doc;
                    past
                }
            };
            continue;
        }
        match word(tokens, k) {
            "///" => {
                documented = true;
                k += 1;
            }
            "$" if word(tokens, k + 1) == "(" => k += 2,
            ")" if matches!(word(tokens, k + 1), "*" | "+" | "?") => k += 2,
            "," => k += 1,
            _ => {
                let (name, mut past) = name_at(tokens, k);
                found.push((tokens[k].line, name, documented));
                documented = false;
                // On past its fields and discriminant, to its comma or the end.
                while past < close && !matches!(word(tokens, past), "," | ")") {
                    past = if matches!(word(tokens, past), "{" | "(" | "[") {
                        past_close(tokens, past)
                    } else {
                        past + 1
                    };
                }
                k = past;
            }
        }
    }
    found
}

/// Reads one source's `text` for its documentation.
fn read(text: &str) -> Read {
    let tokens = tokens(text);
    let mut read = Read {
        module_doc: word(&tokens, 0) == "//!",
        ..Read::default()
    };
    let (mut i, mut documented) = (0, false);
    while i < tokens.len() {
        if let Some(attribute) = attribute(&tokens, i) {
            i = match attribute {
                Attribute::Test { past, file } => {
                    read.test_files.extend(file);
                    documented = false;
                    past
                }
                Attribute::Other { past, doc } => {
                    documented |= doc;
                    past
                }
            };
            continue;
        }
        if word(&tokens, i) == "///" {
            documented = true;
            i += 1;
            continue;
        }
        if !is_restricted(&tokens, i) {
            documented = false;
            i += 1;
            continue;
        }
        let line = tokens[i].line;
        let after = past_close(&tokens, i + 1);
        let (item, kind, past) = item_at(&tokens, after);
        match (kind, word(&tokens, past)) {
            ("use", _) => {}
            ("mod", ";") if !documented => read.file_modules.push((line, item.clone())),
            ("mod", "{") if word(&tokens, past + 1) == "//!" => {}
            _ if !documented => read.missing.push((line, item.clone())),
            _ => {}
        }
        read.checked += usize::from(kind != "use");
        if kind == "enum" {
            let open = (past..tokens.len()).find(|&k| matches!(word(&tokens, k), "{" | ";"));
            if let Some(open) = open.filter(|&k| word(&tokens, k) == "{") {
                for (line, name, documented) in variants(&tokens, open) {
                    read.checked += 1;
                    if !documented {
                        read.missing
                            .push((line, format!("variant {name} of {item}")));
                    }
                }
            }
        }
        documented = false;
        i = past;
    }
    read
}

/// The documentation missing under each of `dirs`, each as `file:line: what`, with
/// how many items were checked in all. Paths are shown from `root`.
fn undocumented(root: &Path, dirs: &[&Path]) -> (Vec<String>, usize) {
    let mut missing = Vec::new();
    let mut count = 0;
    for dir in dirs {
        let files: Vec<(PathBuf, Read)> = sources(dir)
            .into_iter()
            .map(|path| {
                let read = read(&std::fs::read_to_string(&path).unwrap());
                (path, read)
            })
            .collect();
        let test_paths = crate::sources::test_paths(
            files
                .iter()
                .map(|(path, read)| (path.as_path(), read.test_files.as_slice())),
        );
        let starts_with_doc =
            |path: &Path| files.iter().any(|(p, read)| p == path && read.module_doc);
        for (path, read) in &files {
            let shown = path.strip_prefix(root).unwrap_or(path).display();
            if !read.module_doc {
                missing.push(format!("{shown}:1: no `//!` module doc at its start"));
            }
            if test_paths.iter().any(|t| path.starts_with(t)) {
                continue;
            }
            count += read.checked;
            let mut found = read.missing.clone();
            for (line, item) in &read.file_modules {
                let name = item.trim_start_matches("mod ");
                let dir = module_dir(path);
                let file = [
                    dir.join(format!("{name}.rs")),
                    dir.join(name).join("mod.rs"),
                ];
                if !file.iter().any(|f| starts_with_doc(f)) {
                    found.push((*line, format!("{item} (its file has no `//!` either)")));
                }
            }
            found.sort();
            missing.extend(
                found
                    .iter()
                    .map(|(line, what)| format!("{shown}:{line}: {what}")),
            );
        }
    }
    (missing, count)
}

#[test]
fn every_item_shared_between_the_daemons_modules_has_a_doc_comment() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (missing, count) = undocumented(root, &[&root.join("src"), &root.join("bcrypt/src")]);
    assert!(
        count > 300,
        "only {count} items checked: the reader misses some"
    );
    assert!(
        missing.is_empty(),
        "undocumented: say what each is for, in a `///` (or `//!`) doc comment:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_reader_finds_what_has_no_doc_and_only_that() {
    let text = r##"//! A sample.
pub(crate) fn bare() {}
/// Documented, with an attribute between.
#[inline]
pub(crate) const fn documented() {}
#[doc = "Documented as an attribute."]
pub(super) struct Written {
    /// A documented field.
    pub(crate) kept: u8,
    pub(crate) loose: u8,
    private: u8,
}
const S: &str = "pub(crate) fn in_a_string() {}";
// pub(crate) fn in_a_comment() {}
/* pub(crate) fn in_a_block() {} */
/// A doc for a private item does not carry over.
fn private() {}
pub(in crate::x) unsafe extern "C" fn far() {}
/// An enum.
pub(crate) enum E<'a> {
    /// Documented.
    A { x: &'a u8 },
    B(u8),
    #[doc = "Documented."]
    C = 3,
}
pub(crate) use std::fmt;
pub(crate) mod inline {
    //! Documented inside.
}
pub(crate) mod file;
macro_rules! declare {
    ($($hook:ident $doc:literal)*) => {
        /// In a macro body, documented.
        pub(crate) enum Input {
            $(
                #[doc = $doc]
                $hook,
            )*
            Bare,
        }
        pub(crate) fn run() {}
        /// A struct in a macro body, its field undocumented.
        pub(crate) struct Fields {
            pub(crate) $hook: u8,
        }
    };
}
#[cfg(test)]
mod tests {
    pub(crate) fn in_a_test() {}
}
#[cfg(test)]
pub(crate) fn test_helper() {}
pub(crate) struct Tuple(pub(crate) u8);
"##;
    let sample = read(text);
    assert!(sample.module_doc);
    let missing: Vec<(usize, &str)> = sample
        .missing
        .iter()
        .map(|(l, w)| (*l, w.as_str()))
        .collect();
    assert_eq!(
        missing,
        [
            (2, "fn bare"),
            (10, "field loose"),
            (18, "fn far"),
            (23, "variant B of enum E"),
            (40, "variant Bare of enum Input"),
            (42, "fn run"),
            (45, "field $hook"),
            (55, "struct Tuple"),
            (55, "tuple field of type u8"),
        ]
    );
    assert_eq!(sample.file_modules, [(31, "mod file".to_owned())]);
    assert!(!read("/// Not a module doc.\nfn f() {}\n").module_doc);
    assert!(!read("//// Not a doc.\nfn f() {}\n").module_doc);
}

#[test]
fn the_gate_fails_on_undocumented_items_and_module_files_and_skips_test_files() {
    let src = std::env::temp_dir().join(format!("flaskbbd-doc-gate-{}", std::process::id()));
    std::fs::create_dir_all(src.join("testing")).unwrap();
    let bare = "pub(crate) fn bare() {}\n";
    std::fs::write(
        src.join("lib.rs"),
        "//! Root.\n#[cfg(test)]\nmod testing;\npub(crate) mod a;\npub(crate) mod b;\n",
    )
    .unwrap();
    std::fs::write(src.join("a.rs"), format!("//! A.\n{bare}")).unwrap();
    std::fs::write(src.join("b.rs"), "fn no_module_doc() {}\n").unwrap();
    std::fs::write(src.join("testing/mod.rs"), bare).unwrap();
    let (found, count) = undocumented(&src, &[&src]);
    std::fs::remove_dir_all(&src).unwrap();
    assert_eq!(
        found,
        [
            "a.rs:2: fn bare",
            "b.rs:1: no `//!` module doc at its start",
            "lib.rs:5: mod b (its file has no `//!` either)",
            "testing/mod.rs:1: no `//!` module doc at its start",
        ]
    );
    assert_eq!(count, 3);
}
