//! The `reliability` tests again, on PostgreSQL: the harness runs a test binary whose
//! name ends in `_pg` against a fresh PostgreSQL database (`flaskbbd_tests::backend`).
//! There, "read-only" is the database switched to read-only transactions with its
//! sessions ended, and "locked" is an exclusive lock on `users`.

#[path = "reliability.rs"]
mod reliability;
