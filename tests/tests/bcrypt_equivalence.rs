//! The bcrypt crate (which hashes new passwords) and the system's libxcrypt (which
//! verifies them) agree bit for bit: random passwords, random salts, costs 4 to 8,
//! and every variant `$2a$`, `$2b$`, `$2y$`, in both directions.

use bcrypt::Version;
use flaskbbd::password::{libxcrypt_crypt, Engine, Verifier};

/// xorshift64*: a fixed, reproducible stream (set FLASKBBD_SEED to explore others).
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

/// A password of 1 to 72 bytes mixing ASCII, accented letters, symbols and emoji.
fn password(rng: &mut Rng) -> String {
    const ALPHABET: &[&str] = &[
        "a", "Z", "7", " ", "~", "$", "é", "ß", "€", "中", "😀", "\u{7f}", "\t", "'", "\"",
    ];
    let target = 1 + rng.below(72) as usize;
    let mut s = String::new();
    loop {
        let piece = ALPHABET[rng.below(ALPHABET.len() as u64) as usize];
        if s.len() + piece.len() > target {
            break;
        }
        s.push_str(piece);
    }
    if s.is_empty() {
        s.push('x');
    }
    s
}

/// bcrypt's base64 alphabet; a 22-character salt's last character carries 2 bits.
const BCRYPT64: &[u8] = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

#[test]
fn crate_and_libxcrypt_hashes_agree_bit_for_bit() {
    assert!(
        libxcrypt_crypt("x", "$2b$04$......................").is_some(),
        "libxcrypt is not available"
    );
    let seed = std::env::var("FLASKBBD_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f1a5_0b0b_d00d);
    let mut rng = Rng(seed);
    let ours = Verifier::with_engine(4, Engine::Libxcrypt).unwrap();
    let crate_engine = Verifier::with_engine(4, Engine::BcryptCrate).unwrap();
    let variant = |i: usize| match i % 3 {
        0 => (Version::TwoA, "2a"),
        1 => (Version::TwoB, "2b"),
        _ => (Version::TwoY, "2y"),
    };
    for case in 0..90 {
        let pw = password(&mut rng);
        let cost = 4 + (case % 5) as u32;
        let (version, tag) = variant(case);

        // The crate's hash, checked by libxcrypt.
        let mut salt = [0u8; 16];
        salt.iter_mut().for_each(|b| *b = rng.next() as u8);
        let by_crate = bcrypt::hash_with_salt(&pw, cost, salt)
            .unwrap()
            .format_for_version(version);
        assert_eq!(
            libxcrypt_crypt(&pw, &by_crate).as_deref(),
            Some(by_crate.as_str()),
            "case {case}: {pw:?} {by_crate}"
        );
        assert!(ours.verify(&pw, Some(&by_crate)), "case {case}");
        assert!(
            !ours.verify(&format!("{pw}!"), Some(&by_crate)) || pw.len() >= 72,
            "case {case}"
        );

        // libxcrypt's hash from a random setting, checked by the crate.
        let mut setting = format!("${tag}${cost:02}$");
        for i in 0..22 {
            let c = if i == 21 {
                b".Oeu"[rng.below(4) as usize]
            } else {
                BCRYPT64[rng.below(64) as usize]
            };
            setting.push(c as char);
        }
        let by_libxcrypt = libxcrypt_crypt(&pw, &setting)
            .unwrap_or_else(|| panic!("case {case}: libxcrypt refused {setting}"));
        assert_eq!(by_libxcrypt.len(), 60);
        assert!(
            bcrypt::verify(&pw, &by_libxcrypt).unwrap(),
            "case {case}: {pw:?} {by_libxcrypt}"
        );
        assert!(crate_engine.verify(&pw, Some(&by_libxcrypt)), "case {case}");
        assert!(
            !bcrypt::verify(format!("{pw}!"), &by_libxcrypt).unwrap() || pw.len() >= 72,
            "case {case}"
        );
    }
}
