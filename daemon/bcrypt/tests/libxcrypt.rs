//! The engine against the system's libxcrypt, bit for bit: random keys of 0 to 72
//! bytes (any byte but NUL, biased toward the bytes the `$2a$` countermeasure is
//! about), random salts (last character not always canonical), costs 4 to 8, every
//! prefix, one to four lanes, mixed costs in one call, computations admitted while
//! others are part-way through. Set FLASKBBD_SEED to explore
//! another stream, FLASKBBD_CASES for more cases.

// A test harness: a failure here should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::CString;

use flaskbbd_bcrypt::{crypt, crypt_many, Interleaved, Job, Setting, SettingError, MAX_LANES};

#[path = "../support/libxcrypt.rs"]
mod libxcrypt_lib;

/// libxcrypt's `crypt(key, setting)`; `None` when it refuses the setting.
fn libxcrypt(key: &[u8], setting: &str) -> Option<String> {
    static LIB: std::sync::OnceLock<libxcrypt_lib::Libxcrypt> = std::sync::OnceLock::new();
    let lib = LIB.get_or_init(|| libxcrypt_lib::Libxcrypt::load().expect("libxcrypt is installed"));
    let (k, s) = (CString::new(key).ok()?, CString::new(setting).ok()?);
    let mut data = vec![0u8; libxcrypt_lib::CRYPT_DATA_SIZE];
    lib.crypt(&k, &s, &mut data)
}

/// xorshift64*: a fixed, reproducible stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const BCRYPT64: &[u8] = flaskbbd_bcrypt::BASE64_ALPHABET;

fn key(rng: &mut Rng) -> Vec<u8> {
    if rng.below(4) == 0 {
        return shaped_key(rng);
    }
    let len = rng.below(73) as usize;
    (0..len)
        .map(|_| match rng.below(4) {
            0 => 0xff,
            1 => 0x80 + rng.below(0x7f) as u8,
            _ => 1 + rng.below(0xff) as u8,
        })
        .collect()
}

/// A key the old sign-extension bug reads exactly as the correct code does although
/// it has high bytes: in each 4-byte group of the cycled key, a high byte comes only
/// after 0xff bytes. `$2a$` then flips a bit of the initial state (its countermeasure).
fn shaped_key(rng: &mut Rng) -> Vec<u8> {
    // 4g - 1 bytes: with its NUL the key fills whole groups, each time round.
    let groups = 1 + rng.below(18) as usize;
    let mut key = Vec::with_capacity(4 * groups);
    for _ in 0..groups {
        let ffs = rng.below(3) as usize;
        key.extend(std::iter::repeat_n(0xff, ffs));
        key.push(0x80 + rng.below(0x7f) as u8);
        while key.len() % 4 != 0 {
            key.push(1 + rng.below(0x7f) as u8);
        }
    }
    key.pop();
    key
}

fn setting(rng: &mut Rng, cost: u32) -> String {
    let prefix = ["2a", "2b", "2y"][rng.below(3) as usize];
    let mut s = format!("${prefix}${cost:02}$");
    for _ in 0..22 {
        s.push(BCRYPT64[rng.below(64) as usize] as char);
    }
    s
}

#[test]
fn random_keys_salts_costs_and_lanes_agree_with_libxcrypt() {
    let seed = std::env::var("FLASKBBD_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0b0b_5eed_1a2e_5eed_u64);
    let cases: usize = std::env::var("FLASKBBD_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut rng = Rng(seed);
    let mut countermeasure_seen = false;
    for case in 0..cases {
        // Several jobs, mostly sharing a cost (so they run in lanes), sometimes not.
        let n = 1 + rng.below(2 * MAX_LANES as u64) as usize;
        let base = 4 + rng.below(5) as u32;
        let owned: Vec<(Vec<u8>, String)> = (0..n)
            .map(|_| {
                let cost = if rng.below(5) == 0 {
                    4 + rng.below(5) as u32
                } else {
                    base
                };
                (key(&mut rng), setting(&mut rng, cost))
            })
            .collect();
        let settings: Vec<Setting> = owned
            .iter()
            .map(|(_, s)| Setting::parse(s).unwrap())
            .collect();
        let jobs: Vec<Job<'_>> = owned
            .iter()
            .zip(&settings)
            .map(|((key, _), setting)| Job { key, setting })
            .collect();
        let lanes = 1 + rng.below(MAX_LANES as u64) as usize;
        let ours = crypt_many(&jobs, lanes);
        for (i, ((key, setting), hash)) in owned.iter().zip(&ours).enumerate() {
            let theirs =
                libxcrypt(key, setting).unwrap_or_else(|| panic!("libxcrypt refused {setting}"));
            assert_eq!(
                hash.as_str(),
                theirs,
                "case {case} job {i} ({lanes} lanes): key {key:02x?} setting {setting}"
            );
            // Where the two readings of a $2a$ key differ only by the countermeasure.
            if setting.starts_with("$2a$") {
                let as_2b = setting.replacen("$2a$", "$2b$", 1);
                if libxcrypt(key, &as_2b).map(|h| h[4..].to_owned()) != Some(theirs[4..].to_owned())
                {
                    countermeasure_seen = true;
                }
            }
        }
    }
    assert!(
        countermeasure_seen || cases < 60,
        "no case exercised $2a$'s countermeasure; change the seed"
    );
}

#[test]
fn computations_admitted_part_way_through_others_agree_with_libxcrypt() {
    let seed = std::env::var("FLASKBBD_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x1a7e_c0e5_5eed_0001_u64);
    let mut rng = Rng(seed);
    for round in 0..8 {
        let lanes = 1 + rng.below(MAX_LANES as u64) as usize;
        let mut engine = Interleaved::new(lanes);
        let jobs: Vec<(Vec<u8>, String)> = (0..12)
            .map(|_| {
                let cost = 4 + rng.below(5) as u32;
                (key(&mut rng), setting(&mut rng, cost))
            })
            .collect();
        let mut hashes: Vec<Option<String>> = vec![None; jobs.len()];
        let mut next = 0;
        let mut steps = 0u64;
        while next < jobs.len() || !engine.is_empty() {
            // Admit the next job after a random number of passes (the first pass of a
            // new lane is salted while the others' are not), while a lane is free.
            if next < jobs.len() && rng.below(40) == 0 {
                let (k, s) = &jobs[next];
                if engine.admit(k, &Setting::parse(s).unwrap(), next).is_ok() {
                    next += 1;
                }
            }
            if engine.is_empty() {
                continue;
            }
            engine.step(|i, h| {
                assert!(
                    hashes[i].replace(h.into_string()).is_none(),
                    "job {i} twice"
                );
            });
            steps += 1;
        }
        assert!(steps > 0);
        for (i, ((k, s), h)) in jobs.iter().zip(&hashes).enumerate() {
            assert_eq!(
                h.as_deref(),
                libxcrypt(k, s).as_deref(),
                "round {round} job {i} ({lanes} lanes): key {k:02x?} setting {s}"
            );
        }
    }
}

#[test]
fn countermeasure_keys_agree_at_every_test_cost() {
    // Keys whose bytes the sign-extension bug reads alike: 0xff runs before a high byte.
    for cost in 4..=8 {
        for key in [
            &b"\xff\xff\xa3"[..],
            b"\xff\xa3",
            b"\xff\xff\xff\x80\xff\xff\xff\xff",
            b"ab\xff\xff\xa3",
        ] {
            for prefix in ["2a", "2b", "2y"] {
                let s = format!("${prefix}${cost:02}$/OK.fbVrR/bpIqNJ5ianF.");
                let ours = crypt(key, &Setting::parse(&s).unwrap());
                assert_eq!(
                    Some(ours.as_str().to_owned()),
                    libxcrypt(key, &s),
                    "{key:02x?} {s}"
                );
            }
        }
    }
}

#[test]
fn known_vectors_at_costs_10_and_12() {
    // Computed by libxcrypt 4.4 on Debian 12; checked against it again when present.
    for (key, hash) in [
        (
            &b"correct horse battery staple"[..],
            "$2b$10$N9qo8uLOickgx2ZMRZoMyehtJ/whDdsI.d1w/JqKiOrDw8pCT0JLG",
        ),
        (
            "Ünïcödé pässwörd 🔑".as_bytes(),
            "$2a$12$EXRkfkdmXn2gzds2SSitu.yGUdRtrQHyw.N9OnDoI.z.1VFI54uka",
        ),
        (
            b"",
            "$2y$10$LgfYWkbzEvQ4JakH7rOvHeU6pINYiHnazYxe4GikGWx9MaUr27Vpa",
        ),
        (
            b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!@#$%^&*()",
            "$2b$12$k42ZFHFWqBp3vWli.nIn8uSJjZdZj4KDGs6tQX8xTZCb1ZULjEnJy",
        ),
        (
            b"\xff\xff\xa3",
            "$2a$10$/OK.fbVrR/bpIqNJ5ianF.BserRw5WGp1Wrh8WvrNhCudoZLxbrQS",
        ),
    ] {
        let setting = Setting::parse(hash).unwrap();
        assert!(crypt(key, &setting).matches(hash), "{hash}");
        assert_eq!(libxcrypt(key, hash).as_deref(), Some(hash));
    }
}

#[test]
fn settings_libxcrypt_refuses_are_refused() {
    for s in [
        "$2b$03$abcdefghijklmnopqrstuu",
        "$2b$32$abcdefghijklmnopqrstuu",
        "$2b$10$abcdefghijklmnopqrst!u",
    ] {
        assert_eq!(libxcrypt(b"k", s), None, "{s}");
        assert!(Setting::parse(s).is_err(), "{s}");
    }
    // libxcrypt computes $2x$ (the bug kept for old hashes); this engine refuses it.
    assert!(libxcrypt(b"k", "$2x$05$abcdefghijklmnopqrstuu").is_some());
    assert_eq!(
        Setting::parse("$2x$05$abcdefghijklmnopqrstuu"),
        Err(SettingError::BuggyVariant)
    );
}
