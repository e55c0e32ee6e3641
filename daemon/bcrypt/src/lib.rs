//! bcrypt's EksBlowfish, several hashes at once on one thread.
//!
//! One bcrypt computation is a chain of about a million Blowfish encryptions at cost
//! 10, each waiting on the previous one's four S-box loads: a core spends most of the
//! time waiting on its load ports, not computing. Running N independent computations
//! interleaved in one loop ("lanes") fills those waits with the other lanes' work, so
//! one core finishes N hashes in much less than N times one hash's time
//! (docs/benchmarks.md has the figures). Password crackers have done this for years;
//! a login server can do it for the verifications that queue under a storm.
//!
//! The results are bit for bit those of the system's bcrypt (libxcrypt, from Solar
//! Designer's crypt_blowfish): the same settings are accepted (`$2a$`, `$2b$`, `$2y$`,
//! costs 04 to 31, 22 salt characters of bcrypt's base64), the same output is made
//! (the salt's last character made canonical), the key is read as C reads it (up to
//! the first NUL, cycled with its terminating NUL to 72 bytes), and `$2a$` keeps
//! crypt_blowfish's countermeasure for the old sign-extension bug. `$2x$` (hashes made
//! *with* that bug) is refused: such a hash can collide with others. A test compares
//! this crate with libxcrypt on random inputs at every cost from 4 to 8.
//!
//! Safe Rust only; every state is zeroized after use, and [`Hash::matches`] compares
//! in constant time.

#![forbid(unsafe_code)]

use zeroize::Zeroize;

mod pi;

/// bcrypt reads at most this many bytes of a key.
pub const MAX_KEY_BYTES: usize = 72;

/// The most lanes one computation interleaves.
pub const MAX_LANES: usize = 4;

/// Which bcrypt prefix a setting has; all three compute alike for keys without bytes
/// ≥ 0x80 preceded by 0xFF in their 4-byte group (every UTF-8 key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `$2a$`: with crypt_blowfish's countermeasure against the sign-extension bug.
    A,
    /// `$2b$`: OpenBSD's fix of the key-length wrap (the current prefix).
    B,
    /// `$2y$`: crypt_blowfish's name for the corrected algorithm.
    Y,
}

/// Why a string is not a bcrypt setting this crate computes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    /// Not `$2a$`, `$2b$`, `$2y$` or `$2x$` followed by a cost.
    #[error(
        "not a bcrypt hash (expected $2a$, $2b$ or $2y$, a two-digit cost and 22 salt characters)"
    )]
    NotBcrypt,
    /// `$2x$`: computed with crypt_blowfish's sign-extension bug.
    #[error("$2x$ hashes were made with crypt_blowfish's sign-extension bug and can collide; they are refused: reset the password")]
    BuggyVariant,
    /// The cost is not two digits from 04 to 31.
    #[error("the bcrypt cost must be two digits from 04 to 31")]
    Cost,
    /// The salt is shorter than 22 characters or has one outside bcrypt's base64.
    #[error("the bcrypt salt must be 22 characters of ./A-Za-z0-9")]
    Salt,
}

/// A parsed bcrypt setting: prefix, cost and salt (a full hash is a setting too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    variant: Variant,
    cost: u32,
    salt: [u32; 4],
    /// The first 29 characters of every hash made with this setting.
    head: [u8; 29],
}

/// bcrypt's base64 alphabet (not RFC 4648's order): the one place it is written.
pub const BASE64_ALPHABET: &[u8; 64] =
    b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const ALPHABET: &[u8; 64] = BASE64_ALPHABET;

/// `bytes` in bcrypt's base64 (big-endian 6-bit groups, no padding; a partial group
/// gives one character more than its bytes): 16 bytes make a salt's 22 characters,
/// 23 a checksum's 31.
pub fn encode_base64(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len().div_ceil(3) * 4);
    encode64(bytes, &mut out);
    out.into_iter().map(char::from).collect()
}

/// Whether `a` and `b` are equal, in time independent of where they differ (their
/// lengths are not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn decode64(c: u8) -> Option<u8> {
    match c {
        b'.' => Some(0),
        b'/' => Some(1),
        b'A'..=b'Z' => Some(c - b'A' + 2),
        b'a'..=b'z' => Some(c - b'a' + 28),
        b'0'..=b'9' => Some(c - b'0' + 54),
        _ => None,
    }
}

/// Encodes `bytes` in bcrypt's base64 into `out`: 3 bytes to 4 characters, a partial
/// group to one character more than its bytes, no padding.
fn encode64(bytes: &[u8], out: &mut Vec<u8>) {
    for group in bytes.chunks(3) {
        let b0 = group[0];
        out.push(ALPHABET[usize::from(b0 >> 2)]);
        let b1 = group.get(1).copied();
        out.push(ALPHABET[usize::from((b0 & 3) << 4 | b1.unwrap_or(0) >> 4)]);
        let Some(b1) = b1 else { break };
        let b2 = group.get(2).copied();
        out.push(ALPHABET[usize::from((b1 & 0x0f) << 2 | b2.unwrap_or(0) >> 6)]);
        let Some(b2) = b2 else { break };
        out.push(ALPHABET[usize::from(b2 & 0x3f)]);
    }
}

impl Setting {
    /// Parses the first 29 characters of `s` (what follows is ignored, as
    /// crypt_blowfish does, so a stored hash is its own setting).
    pub fn parse(s: &str) -> Result<Setting, SettingError> {
        let b = s.as_bytes();
        if b.len() < 7 || b[0] != b'$' || b[1] != b'2' || b[3] != b'$' || b[6] != b'$' {
            return Err(SettingError::NotBcrypt);
        }
        let variant = match b[2] {
            b'a' => Variant::A,
            b'b' => Variant::B,
            b'y' => Variant::Y,
            b'x' => return Err(SettingError::BuggyVariant),
            _ => return Err(SettingError::NotBcrypt),
        };
        if !b[4].is_ascii_digit() || !b[5].is_ascii_digit() {
            return Err(SettingError::Cost);
        }
        let cost = u32::from(b[4] - b'0') * 10 + u32::from(b[5] - b'0');
        if !(4..=31).contains(&cost) {
            return Err(SettingError::Cost);
        }
        let chars = b.get(7..29).ok_or(SettingError::Salt)?;
        let mut values = [0u8; 22];
        for (v, &c) in values.iter_mut().zip(chars) {
            *v = decode64(c).ok_or(SettingError::Salt)?;
        }
        // 22 characters carry 132 bits; the salt is the first 128.
        let mut bytes = [0u8; 16];
        let mut acc = 0u32;
        let mut bits = 0;
        let mut n = 0;
        for &v in &values {
            acc = acc << 6 | u32::from(v);
            bits += 6;
            if bits >= 8 && n < 16 {
                bits -= 8;
                bytes[n] = (acc >> bits) as u8;
                n += 1;
            }
        }
        let salt = std::array::from_fn(|i| {
            u32::from_be_bytes([
                bytes[4 * i],
                bytes[4 * i + 1],
                bytes[4 * i + 2],
                bytes[4 * i + 3],
            ])
        });
        let mut head = [0u8; 29];
        head.copy_from_slice(&b[..29]);
        // The last salt character keeps only its 2 significant bits.
        head[28] = ALPHABET[usize::from(values[21] & 0x30)];
        Ok(Setting {
            variant,
            cost,
            salt,
            head,
        })
    }

    /// The cost: 2^cost rounds of the key schedule.
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// The prefix's variant.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// The setting as every hash made with it begins: prefix, cost and salt, 29
    /// characters, the salt's last character canonical.
    pub fn as_str(&self) -> &str {
        // Parsed from a &str and rewritten with an ASCII character only.
        std::str::from_utf8(&self.head).unwrap_or_default()
    }
}

/// A computed bcrypt hash: 60 characters, `$2?$cc$` + 22 salt + 31 checksum.
#[derive(Clone, PartialEq, Eq)]
pub struct Hash(String);

impl Hash {
    /// The hash as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hash as a `String`.
    pub fn into_string(self) -> String {
        self.0
    }

    /// Whether `stored` is this hash, in time independent of where they differ.
    pub fn matches(&self, stored: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), stored.as_bytes())
    }
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The salt and cost only: a hash is an offline-guessing target.
        write!(f, "Hash({}…)", &self.0[..29])
    }
}

/// One key to hash with one setting.
#[derive(Clone, Copy)]
pub struct Job<'a> {
    /// The key (password), read up to its first NUL and its first 72 bytes.
    pub key: &'a [u8],
    /// Prefix, cost and salt.
    pub setting: &'a Setting,
}

impl std::fmt::Debug for Job<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("setting", &self.setting)
            .finish_non_exhaustive()
    }
}

/// `crypt(key, setting)` on one lane.
pub fn crypt(key: &[u8], setting: &Setting) -> Hash {
    let mut engine = Interleaved::new(1);
    let mut out = None;
    if engine.admit(key, setting, ()).is_ok() {
        while out.is_none() {
            engine.step(|(), h| out = Some(h));
        }
    }
    // One lane was free: the loop ends with the hash.
    out.unwrap_or_else(|| Hash(String::new()))
}

/// Hashes every job, up to `max_lanes` (1 to [`MAX_LANES`]) at once on this thread, the
/// next job taking the first lane that frees; the answers come in the jobs' order.
pub fn crypt_many(jobs: &[Job<'_>], max_lanes: usize) -> Vec<Hash> {
    let mut engine = Interleaved::new(max_lanes);
    let mut out: Vec<Option<Hash>> = vec![None; jobs.len()];
    let mut next = jobs.iter().enumerate();
    let mut waiting = next.next();
    loop {
        while let Some((i, job)) = waiting {
            if engine.admit(job.key, job.setting, i).is_err() {
                break;
            }
            waiting = next.next();
        }
        if engine.is_empty() {
            break;
        }
        engine.step(|i, h| out[i] = Some(h));
    }
    out.into_iter().flatten().collect()
}

/// Up to [`MAX_LANES`] bcrypt computations in flight on one thread, interleaved one
/// key-schedule pass at a time, each tagged with a `T` of the caller's.
///
/// A computation is a chain of `1 + 2^(cost+1)` passes over the Blowfish state; every
/// [`step`](Self::step) advances each lane by one pass, whatever its cost and however
/// far along it is. So a new computation takes a lane the moment one frees (a pass is
/// tens of microseconds), instead of waiting for a whole batch to end; computations of
/// different costs share the loop. With fewer lanes busy the loop interleaves only
/// those, so a lone computation runs at one lane's speed.
pub struct Interleaved<T> {
    /// The lanes' states; lanes `0..work.len()` are busy.
    st: Box<[State; MAX_LANES]>,
    work: Vec<Work>,
    /// The callers' tags, lane by lane as `work`. Kept apart so that the passes
    /// ([`advance`]) are not generic: they compile, optimized, in this crate, even
    /// in a caller's debug build.
    tags: Vec<T>,
    lanes: usize,
}

/// What one busy lane computes, besides its Blowfish state.
struct Work {
    /// The key as 18 words (mixed in on every other pass).
    key: [u32; 18],
    salt: [u32; 4],
    /// Passes done, and how many in all.
    done: u64,
    total: u64,
    head: [u8; 29],
}

impl Drop for Work {
    fn drop(&mut self) {
        self.key.zeroize();
        self.salt.zeroize();
    }
}

impl<T> std::fmt::Debug for Interleaved<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interleaved")
            .field("lanes", &self.lanes)
            .field("busy", &self.work.len())
            .finish_non_exhaustive()
    }
}

impl<T> Interleaved<T> {
    /// An engine of `lanes` lanes (1 to [`MAX_LANES`]), all free.
    pub fn new(lanes: usize) -> Interleaved<T> {
        Interleaved {
            st: Box::new(std::array::from_fn(|_| State {
                p: [0; 18],
                s: [[0; 256]; 4],
            })),
            work: Vec::with_capacity(MAX_LANES),
            tags: Vec::with_capacity(MAX_LANES),
            lanes: lanes.clamp(1, MAX_LANES),
        }
    }

    /// Computations in flight.
    pub fn len(&self) -> usize {
        self.work.len()
    }

    /// Whether no lane is busy.
    pub fn is_empty(&self) -> bool {
        self.work.is_empty()
    }

    /// Whether every lane is busy.
    pub fn is_full(&self) -> bool {
        self.work.len() >= self.lanes
    }

    /// Starts `crypt(key, setting)` on a free lane; gives `tag` back when none is free.
    pub fn admit(&mut self, key: &[u8], setting: &Setting, tag: T) -> Result<(), T> {
        if self.is_full() {
            return Err(tag);
        }
        let lane = &mut self.st[self.work.len()];
        lane.p = pi::P;
        lane.s = pi::S;
        let (key, flip) = expand_key(key, setting.variant);
        xor_into(&mut lane.p, &key);
        lane.p[0] ^= flip;
        self.work.push(Work {
            key,
            salt: setting.salt,
            done: 0,
            total: 1 + (2u64 << setting.cost),
            head: setting.head,
        });
        self.tags.push(tag);
        Ok(())
    }

    /// The tags of the computations in flight.
    pub fn tags(&self) -> impl Iterator<Item = &T> {
        self.tags.iter()
    }

    /// Abandons every computation in flight (after a failure), zeroing the lanes;
    /// each tag is handed to `each`.
    pub fn abandon(&mut self, mut each: impl FnMut(T)) {
        for lane in self.st.iter_mut() {
            lane.wipe();
        }
        self.work.clear();
        self.tags.drain(..).for_each(&mut each);
    }

    /// One key-schedule pass on every busy lane; each computation that ends with it is
    /// handed to `finished` with its tag, and its lane is free again.
    pub fn step(&mut self, mut finished: impl FnMut(T, Hash)) {
        advance(&mut self.st, &mut self.work);
        // Ended lanes give their place to the last busy one; from the end, so every
        // lane is looked at once.
        for k in (0..self.work.len()).rev() {
            let work = &self.work[k];
            if work.done < work.total {
                continue;
            }
            let hash = output(&self.st[k], &work.head);
            let last = self.work.len() - 1;
            self.st.swap(k, last);
            self.st[last].wipe();
            // The key and salt are zeroized as the work drops.
            self.work.swap_remove(k);
            finished(self.tags.swap_remove(k), hash);
        }
    }
}

/// One key-schedule pass on every busy lane (`work`, lanes `0..work.len()` of `st`).
fn advance(st: &mut [State; MAX_LANES], work: &mut [Work]) {
    let mut mix = [[0u32; 4]; MAX_LANES];
    let mut salted = false;
    for ((lane, work), mix) in st.iter_mut().zip(work.iter()).zip(&mut mix) {
        match work.done {
            // The first pass mixes the salt into every block (the key is in P).
            0 => {
                *mix = work.salt;
                salted = true;
            }
            // Then 2^cost times: the key into P and a pass, the salt and a pass.
            d if d % 2 == 1 => xor_into(&mut lane.p, &work.key),
            _ => {
                for (i, p) in lane.p.iter_mut().enumerate() {
                    *p ^= work.salt[i & 3];
                }
            }
        }
    }
    match work.len() {
        1 => pass::<1>(st, &mix, salted),
        2 => pass::<2>(st, &mix, salted),
        3 => pass::<3>(st, &mix, salted),
        4 => pass::<4>(st, &mix, salted),
        _ => return,
    }
    for work in work {
        work.done += 1;
    }
}
/// One lane's Blowfish state: the P-array and the four S-boxes (4,168 bytes).
struct State {
    p: [u32; 18],
    s: [[u32; 256]; 4],
}

impl State {
    /// Zeroes the state (a lane's state is key material until the lane is reused).
    fn wipe(&mut self) {
        self.p.zeroize();
        self.s.zeroize();
    }
}

impl Drop for State {
    fn drop(&mut self) {
        self.wipe();
    }
}

/// Blowfish's round function.
#[inline(always)]
fn f(s: &[[u32; 256]; 4], x: u32) -> u32 {
    let a = s[0][(x >> 24) as usize];
    let b = s[1][((x >> 16) & 0xff) as usize];
    let c = s[2][((x >> 8) & 0xff) as usize];
    let d = s[3][(x & 0xff) as usize];
    (a.wrapping_add(b) ^ c).wrapping_add(d)
}

/// Encrypts one block per lane, the lanes' rounds interleaved.
#[inline(always)]
fn encrypt<const N: usize>(st: &[State; N], l: &mut [u32; N], r: &mut [u32; N]) {
    for k in 0..N {
        l[k] ^= st[k].p[0];
    }
    for round in 0..8 {
        let i = 2 * round + 1;
        for k in 0..N {
            // P first: off the chain of dependent loads.
            r[k] = (r[k] ^ st[k].p[i]) ^ f(&st[k].s, l[k]);
        }
        for k in 0..N {
            l[k] = (l[k] ^ st[k].p[i + 1]) ^ f(&st[k].s, r[k]);
        }
    }
    for k in 0..N {
        let t = l[k];
        l[k] = r[k] ^ st[k].p[17];
        r[k] = t;
    }
}

/// Replaces the P-array and S-boxes by a chain of encryptions of themselves; when
/// `SALTED`, each block is first mixed with the salt's halves in turn (the key
/// schedule's first pass).
#[inline(always)]
fn schedule<const N: usize, const SALTED: bool>(st: &mut [State; N], salt: &[[u32; 4]; N]) {
    let mut l = [0u32; N];
    let mut r = [0u32; N];
    // Blocks alternate between the salt's first and second halves.
    let mix = |l: &mut [u32; N], r: &mut [u32; N], half: usize| {
        if SALTED {
            for k in 0..N {
                l[k] ^= salt[k][half];
                r[k] ^= salt[k][half + 1];
            }
        }
    };
    for i in (0..18).step_by(2) {
        mix(&mut l, &mut r, i & 2);
        encrypt(st, &mut l, &mut r);
        for k in 0..N {
            st[k].p[i] = l[k];
            st[k].p[i + 1] = r[k];
        }
    }
    // The P-array took 9 blocks: the S-boxes start on the second half.
    for b in 0..4 {
        for i in (0..256).step_by(4) {
            mix(&mut l, &mut r, 2);
            encrypt(st, &mut l, &mut r);
            for k in 0..N {
                st[k].s[b][i] = l[k];
                st[k].s[b][i + 1] = r[k];
            }
            mix(&mut l, &mut r, 0);
            encrypt(st, &mut l, &mut r);
            for k in 0..N {
                st[k].s[b][i + 2] = l[k];
                st[k].s[b][i + 3] = r[k];
            }
        }
    }
}

/// The key as 18 big-endian words, read as crypt_blowfish reads it, and the word to
/// mix into P[0] of the initial state: bit 16 set for a `$2a$` key whose bytes the
/// old sign-extension bug would have read alike (its countermeasure), else 0.
fn expand_key(key: &[u8], variant: Variant) -> ([u32; 18], u32) {
    let key = &key[..key.iter().position(|&b| b == 0).unwrap_or(key.len())];
    // The key with its terminating NUL, repeated.
    let mut stream = key.iter().copied().chain(std::iter::once(0)).cycle();
    let mut words = [0u32; 18];
    let (mut sign, mut diff) = (0u32, 0u32);
    for w in &mut words {
        let (mut correct, mut buggy) = (0u32, 0u32);
        for j in 0..4 {
            let byte = stream.next().unwrap_or(0);
            correct = correct << 8 | u32::from(byte);
            buggy = buggy << 8 | (byte as i8 as i32 as u32);
            if j > 0 {
                sign |= buggy & 0x80;
            }
        }
        diff |= correct ^ buggy;
        *w = correct;
    }
    let safety = if variant == Variant::A { 0x1_0000 } else { 0 };
    // Bit 16 of `diff` ends up set iff the two readings differ anywhere.
    diff |= diff >> 16;
    diff &= 0xffff;
    diff += 0xffff;
    let flip = (sign << 9) & !diff & safety;
    (words, flip)
}

/// "OrpheanBeholderScryDoubt", the block bcrypt encrypts 64 times.
const MAGIC: [u32; 6] = [
    0x4F72_7068,
    0x6561_6E42,
    0x6568_6F6C,
    0x6465_7253,
    0x6372_7944,
    0x6F75_6274,
];

/// `p[i] ^= words[i]`.
#[inline(always)]
fn xor_into(p: &mut [u32; 18], words: &[u32; 18]) {
    for (p, w) in p.iter_mut().zip(words) {
        *p ^= w;
    }
}

/// One key-schedule pass on the first `N` lanes, interleaved; `salted` when some
/// lane takes its first pass (its salt in `mix`; the others' are zero).
fn pass<const N: usize>(st: &mut [State; MAX_LANES], mix: &[[u32; 4]; MAX_LANES], salted: bool) {
    let (Some((st, _)), Some((mix, _))) = (
        st.split_first_chunk_mut::<N>(),
        mix.split_first_chunk::<N>(),
    ) else {
        return;
    };
    if salted {
        schedule::<N, true>(st, mix);
    } else {
        schedule::<N, false>(st, mix);
    }
}

/// The hash of a finished computation: "OrpheanBeholderScryDoubt" encrypted 64 times
/// with the final state, after the setting's head.
fn output(state: &State, head: &[u8; 29]) -> Hash {
    let st = std::array::from_ref(state);
    let mut text = MAGIC;
    for block in 0..3 {
        let (mut l, mut r) = ([text[2 * block]], [text[2 * block + 1]]);
        for _ in 0..64 {
            encrypt(st, &mut l, &mut r);
        }
        text[2 * block] = l[0];
        text[2 * block + 1] = r[0];
    }
    let mut bytes = [0u8; 24];
    for (chunk, word) in bytes.chunks_exact_mut(4).zip(&text) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    text.zeroize();
    let mut out = Vec::with_capacity(60);
    out.extend_from_slice(head);
    encode64(&bytes[..23], &mut out);
    bytes.zeroize();
    // Only bcrypt's alphabet and the setting's ASCII head were written.
    Hash(String::from_utf8(out).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_parsed_as_crypt_blowfish_does() {
        let s = Setting::parse("$2b$05$CCCCCCCCCCCCCCCCCCCCCC").unwrap();
        assert_eq!((s.cost(), s.variant()), (5, Variant::B));
        // The last salt character keeps 2 bits: C (value 4) becomes '.'.
        assert_eq!(&s.head[..], b"$2b$05$CCCCCCCCCCCCCCCCCCCCC.");
        for (bad, why) in [
            ("$2x$05$CCCCCCCCCCCCCCCCCCCCC.", SettingError::BuggyVariant),
            ("$2c$05$CCCCCCCCCCCCCCCCCCCCC.", SettingError::NotBcrypt),
            ("$1$abc", SettingError::NotBcrypt),
            ("", SettingError::NotBcrypt),
            ("$2b$03$CCCCCCCCCCCCCCCCCCCCC.", SettingError::Cost),
            ("$2b$32$CCCCCCCCCCCCCCCCCCCCC.", SettingError::Cost),
            ("$2b$1a$CCCCCCCCCCCCCCCCCCCCC.", SettingError::Cost),
            ("$2b$05$CCCCCCCCCCCCCCCCCCCCC", SettingError::Salt),
            ("$2b$05$CCCCCCCCCCCCCCCCCCCC!.", SettingError::Salt),
        ] {
            assert_eq!(Setting::parse(bad), Err(why), "{bad}");
        }
    }

    #[test]
    fn published_vectors() {
        // crypt_blowfish's own test vectors.
        for (key, hash) in [
            (
                &b"U*U"[..],
                "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
            ),
            (
                b"U*U*",
                "$2a$05$CCCCCCCCCCCCCCCCCCCCC.VGOzA784oUp/Z0DY336zx7pLYAy0lwK",
            ),
            (
                b"",
                "$2a$05$CCCCCCCCCCCCCCCCCCCCC.7uG0VCzI2bS7j6ymqJi9CdcdxiRTWNy",
            ),
            (
                b"\xff\xff\xa3",
                "$2y$05$/OK.fbVrR/bpIqNJ5ianF.CE5elHaaO4EbggVDjb8P19RukzXSM3e",
            ),
            (
                b"\xff\xff\xa3",
                "$2a$05$/OK.fbVrR/bpIqNJ5ianF.nqd1wy.pTMdcvrRWxyiGL2eMz.2a85.",
            ),
            (
                b"\xa3",
                "$2a$05$/OK.fbVrR/bpIqNJ5ianF.Sa7shbm4.OzKpvFnX1pQLmQW96oUlCq",
            ),
        ] {
            let s = Setting::parse(hash).unwrap();
            assert_eq!(crypt(key, &s).as_str(), hash, "{key:?}");
        }
    }

    #[test]
    fn lanes_agree_with_one_lane_and_keep_order() {
        let settings = [
            Setting::parse("$2b$04$abcdefghijklmnopqrstuu").unwrap(),
            Setting::parse("$2a$04$ABCDEFGHIJKLMNOPQRSTUu").unwrap(),
            Setting::parse("$2y$05$0123456789012345678901").unwrap(),
            Setting::parse("$2b$04$..........................").unwrap(),
            Setting::parse("$2b$04$//////////////////////").unwrap(),
        ];
        let keys: [&[u8]; 5] = [b"one", b"", b"three", &[0x41; 80], "é😀".as_bytes()];
        let jobs: Vec<Job<'_>> = keys
            .iter()
            .zip(&settings)
            .map(|(key, setting)| Job { key, setting })
            .collect();
        let single: Vec<Hash> = jobs.iter().map(|j| crypt(j.key, j.setting)).collect();
        for lanes in 1..=MAX_LANES {
            assert_eq!(crypt_many(&jobs, lanes), single, "{lanes} lanes");
        }
        // A NUL ends the key, as in C; bytes past 72 are never read.
        assert_eq!(crypt(b"one\0two", &settings[0]), single[0]);
        assert_eq!(crypt(&[0x41; 72], &settings[3]), single[3]);
    }

    #[test]
    fn matching_compares_whole_strings() {
        let s = Setting::parse("$2b$04$abcdefghijklmnopqrstuu").unwrap();
        let h = crypt(b"pw", &s);
        assert!(h.matches(h.as_str()));
        assert!(!h.matches(&h.as_str()[..59]));
        assert!(!h.matches(&format!("{}x", h.as_str())));
        assert!(!format!("{h:?}").contains(&h.as_str()[29..]));
    }
}
