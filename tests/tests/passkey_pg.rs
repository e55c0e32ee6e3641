//! The `passkey` tests again, on PostgreSQL (the harness runs a `*_pg` test binary
//! against a fresh PostgreSQL database: `flaskbbd_tests::backend`).

#[path = "passkey.rs"]
mod passkey;
