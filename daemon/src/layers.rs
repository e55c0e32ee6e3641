//! The rule that the daemon's modules form no import circle, checked on the sources:
//! every `crate::` path outside a file's tests is an edge from its top-level module to
//! another; a circle among them fails the test, but for one listed in
//! [`KNOWN_CIRCLES`] (none is: a listed circle is one still to go, and a listed
//! circle that is gone fails the test too, so that the list is kept true).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

/// Circles that remain, each as its modules in name order, with why: none.
const KNOWN_CIRCLES: &[&[&str]] = &[];

/// The top-level module names a `crate::` path or use tree starting at `text` names.
fn named(text: &str) -> Vec<String> {
    if let Some(tree) = text.strip_prefix('{') {
        let mut names = Vec::new();
        let (mut depth, mut start) = (0usize, 0usize);
        for (i, c) in tree.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    names.extend(first_word(&tree[start..i]));
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    names.extend(first_word(&tree[start..i]));
                    start = i + 1;
                }
                _ => {}
            }
        }
        names
    } else {
        first_word(text).into_iter().collect()
    }
}

fn first_word(text: &str) -> Option<String> {
    let word: String = text
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
        .collect();
    (!word.is_empty() && word != "self").then_some(word)
}

/// Each top-level module's imports of the others, from the sources under `src`.
fn edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = vec![src.to_path_buf()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                files.push(entry.unwrap().path());
            }
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let relative = path.strip_prefix(src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_str().unwrap().trim_end_matches(".rs").to_owned();
        if ["lib", "main", "testing", "layers"].contains(&module.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // What the module's tests use is not the module's.
        let body = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        let code: String = body
            .lines()
            .map(|l| l.split("//").next().unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        let out = graph.entry(module.clone()).or_default();
        for (at, _) in code.match_indices("crate::") {
            for name in named(&code[at + "crate::".len()..]) {
                if name != module {
                    out.insert(name);
                }
            }
        }
    }
    graph
}

/// The circles of `graph`: its strongly connected parts of more than one module.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<Vec<String>> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_owned()];
        while let Some(m) = todo.pop() {
            for next in graph.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|m| (m, reach(m))).collect();
    graph
        .keys()
        .map(|m| {
            graph
                .keys()
                .filter(|o| *o == m || (reached[m].contains(*o) && reached[o].contains(m)))
                .cloned()
                .collect::<Vec<_>>()
        })
        .filter(|c| c.len() > 1)
        .collect()
}

#[test]
fn the_daemon_modules_import_each_other_in_no_circle_but_the_known_ones() {
    let graph = edges(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(graph.len() > 20, "only {} modules read", graph.len());
    assert!(
        graph["server"].contains("daemon"),
        "the reader misses edges"
    );
    let found = circles(&graph);
    let known: BTreeSet<Vec<String>> = KNOWN_CIRCLES
        .iter()
        .map(|c| c.iter().map(|m| m.to_string()).collect())
        .collect();
    let new: Vec<_> = found.difference(&known).collect();
    assert!(
        new.is_empty(),
        "import circles among daemon modules: {new:?}"
    );
    let gone: Vec<_> = known.difference(&found).collect();
    assert!(
        gone.is_empty(),
        "these circles are gone: take them off KNOWN_CIRCLES: {gone:?}"
    );
}

#[test]
fn the_core_imports_nothing_of_its_transport() {
    let graph = edges(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    for core in [
        "daemon",
        "generation",
        "auth",
        "events",
        "config",
        "answer",
        "admin",
    ] {
        for transport in ["server", "runtime", "systemd", "cli"] {
            assert!(
                !graph[core].contains(transport),
                "{core} imports {transport}: the core must not know its transport"
            );
        }
    }
    // The transport may name the executor's and the store's types (a timeout, a
    // store error to answer), but it runs work and reaches data only through the core.
    let server = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server");
    for entry in std::fs::read_dir(server).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for field in [".executor", ".store."] {
            assert!(
                !text.contains(field),
                "{} uses the daemon's {field} directly: go through the core",
                path.display()
            );
        }
    }
}

#[test]
fn a_circle_is_found_where_there_is_one() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", &["b"][..]),
        ("b", &["c"][..]),
        ("c", &["a"][..]),
        ("d", &["a"][..]),
    ]
    .into_iter()
    .map(|(m, to)| (m.to_owned(), to.iter().map(|t| t.to_string()).collect()))
    .collect();
    let found = circles(&graph);
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        vec![vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]]
    );
    assert_eq!(
        named("{auth::{A, B}, daemon::Daemon, self}"),
        ["auth", "daemon"]
    );
}
