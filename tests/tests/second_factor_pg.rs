//! The `second_factor` tests again, on PostgreSQL (the harness runs a `*_pg` test
//! binary against a fresh PostgreSQL database: `flaskbbd_tests::backend`).

#[path = "second_factor.rs"]
mod second_factor;
