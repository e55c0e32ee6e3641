//! The system's libxcrypt (`libcrypt.so.1`, its `crypt_rn`), loaded in one place: the
//! daemon's engine for a lone verification, and the reference the engine's tests and
//! benchmarks compare against. It is no part of the bcrypt library, which is safe
//! Rust only: the daemon's `password` module, this crate's equivalence test and its
//! `lanes` example include this file by path.

use std::ffi::{c_char, c_int, c_void, CStr};

type CryptRn =
    unsafe extern "C" fn(*const c_char, *const c_char, *mut c_void, c_int) -> *mut c_char;

/// `sizeof(struct crypt_data)` in libxcrypt's `<crypt.h>`: output 384, setting 384,
/// input 512, reserved 767, initialized 1, internal 30720. The scratch space each
/// call of [`Libxcrypt::crypt`] needs.
pub(super) const CRYPT_DATA_SIZE: usize = 32768;

/// libxcrypt's `crypt_rn`, loaded. The library stays loaded for the process's life.
#[derive(Clone, Copy)]
pub(super) struct Libxcrypt {
    crypt_rn: CryptRn,
}

impl Libxcrypt {
    /// Loads `libcrypt.so.1` and finds `crypt_rn`; the error says which was missing.
    pub(super) fn load() -> Result<Libxcrypt, String> {
        // SAFETY: libcrypt.so.1 is the system's libxcrypt; its initialisers are benign.
        let lib = unsafe { libloading::Library::new("libcrypt.so.1") }
            .map_err(|e| format!("libxcrypt (libcrypt.so.1) not found: {e}"))?;
        // SAFETY: crypt_rn has this signature in libxcrypt (XCRYPT_2.0).
        let crypt_rn = *unsafe { lib.get::<CryptRn>(b"crypt_rn\0") }
            .map_err(|e| format!("libcrypt.so.1 has no crypt_rn (not libxcrypt?): {e}"))?;
        // The function pointer must outlive this scope: never unload.
        std::mem::forget(lib);
        Ok(Libxcrypt { crypt_rn })
    }

    /// `crypt(key, setting)`: the hash of `key` with the salt and cost of `setting` (a
    /// full hash works as a setting), computed in `data` (at least
    /// [`CRYPT_DATA_SIZE`] bytes, which the caller clears after when it must). `None`
    /// when libxcrypt refuses.
    pub(super) fn crypt(&self, key: &CStr, setting: &CStr, data: &mut [u8]) -> Option<String> {
        if data.len() < CRYPT_DATA_SIZE {
            return None;
        }
        // SAFETY: both strings are NUL-terminated; `data` is at least CRYPT_DATA_SIZE
        // bytes, exclusively ours for the call; the result (or NULL) points into it.
        let out = unsafe {
            (self.crypt_rn)(
                key.as_ptr(),
                setting.as_ptr(),
                data.as_mut_ptr().cast(),
                CRYPT_DATA_SIZE as c_int,
            )
        };
        if out.is_null() {
            return None;
        }
        // SAFETY: a non-NULL result is a NUL-terminated string in `data`.
        let hash = unsafe { CStr::from_ptr(out) }.to_str().ok()?.to_owned();
        // libxcrypt marks failures with a hash starting with '*'.
        (!hash.starts_with('*')).then_some(hash)
    }
}
