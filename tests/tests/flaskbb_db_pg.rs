//! The `flaskbb_db` tests again, on PostgreSQL: the harness runs a test binary whose
//! name ends in `_pg` against a fresh PostgreSQL database (`flaskbbd_tests::backend`).

#[path = "flaskbb_db.rs"]
mod flaskbb_db;
