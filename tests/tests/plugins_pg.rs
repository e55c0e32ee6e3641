//! The `plugins` tests again, on PostgreSQL: the harness runs a test binary whose
//! name ends in `_pg` against a fresh PostgreSQL database (`flaskbbd_tests::backend`).

#[path = "plugins.rs"]
mod plugins;
