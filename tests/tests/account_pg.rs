//! The `account` tests again, on PostgreSQL (the harness runs a `*_pg` test binary
//! against a fresh PostgreSQL database: `flaskbbd_tests::backend`).

#[path = "account.rs"]
mod account;
