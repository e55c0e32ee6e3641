//! Hashes per second on one thread for 1 to 4 lanes, beside libxcrypt's single
//! hash: how the lane count was chosen. `cargo run --release -p flaskbbd-bcrypt
//! --example lanes -- [cost]`.

// A test harness: a failure here should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    ffi::CString,
    sync::OnceLock,
    time::{Duration, Instant},
};

use flaskbbd_bcrypt::{crypt_many, Job, Setting, MAX_LANES};

fn main() {
    let cost: u32 = std::env::args()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(10);
    let setting = Setting::parse(&format!("$2b${cost:02}$abcdefghijklmnopqrstuu")).unwrap();
    let keys: Vec<Vec<u8>> = (0..MAX_LANES)
        .map(|i| format!("password{i}").into_bytes())
        .collect();
    let budget = Duration::from_secs(3);
    // Interleave the measurements so a noisy neighbour hits them alike.
    let mut rates = [0.0f64; MAX_LANES + 1];
    for _ in 0..3 {
        for n in 1..=MAX_LANES {
            let jobs: Vec<Job<'_>> = keys[..n]
                .iter()
                .map(|k| Job {
                    key: k,
                    setting: &setting,
                })
                .collect();
            let start = Instant::now();
            let mut done = 0;
            while start.elapsed() < budget / 3 {
                done += crypt_many(&jobs, n).len();
            }
            rates[n] += done as f64 / start.elapsed().as_secs_f64() / 3.0;
        }
        let start = Instant::now();
        let mut done = 0;
        while start.elapsed() < budget / 3 {
            let out = libxcrypt("password0", setting_str(cost));
            assert!(out.starts_with("$2b$"));
            done += 1;
        }
        rates[0] += done as f64 / start.elapsed().as_secs_f64() / 3.0;
    }
    println!("cost {cost}, one thread, hashes/s:");
    println!("  libxcrypt     {:8.2}", rates[0]);
    for n in 1..=MAX_LANES {
        println!(
            "  {n} lane(s)    {:8.2}  ({:.2}× libxcrypt)",
            rates[n],
            rates[n] / rates[0]
        );
    }
}

fn setting_str(cost: u32) -> &'static str {
    Box::leak(format!("$2b${cost:02}$abcdefghijklmnopqrstuu").into_boxed_str())
}

#[path = "../support/libxcrypt.rs"]
mod libxcrypt_lib;

/// libxcrypt's `crypt_rn`, loaded once and kept.
fn libxcrypt(key: &str, setting: &str) -> String {
    static LIB: OnceLock<libxcrypt_lib::Libxcrypt> = OnceLock::new();
    let lib = LIB.get_or_init(|| libxcrypt_lib::Libxcrypt::load().unwrap());
    let (k, s) = (CString::new(key).unwrap(), CString::new(setting).unwrap());
    let mut data = vec![0u8; libxcrypt_lib::CRYPT_DATA_SIZE];
    lib.crypt(&k, &s, &mut data).unwrap()
}
