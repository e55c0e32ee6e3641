//! Every committed fuzz input (the seed corpus and each failing input the fuzzer ever
//! found, in `fuzz/regressions/`) through the fuzz body, on every `cargo test`.

use std::{fs, path::Path};

use flaskbbd_protocol::fuzzing::handle_stream;

#[test]
fn every_corpus_and_regression_input_passes_the_fuzz_body() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    for dir in ["corpus/decode", "regressions"] {
        for entry in fs::read_dir(fuzz.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let data = fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| handle_stream(&data));
                assert!(outcome.is_ok(), "{} fails the fuzz body", path.display());
                n += 1;
            }
        }
    }
    assert!(n >= 10, "the committed corpus is missing ({n} files)");
}
