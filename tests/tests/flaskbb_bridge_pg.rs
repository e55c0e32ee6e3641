//! The FlaskBB bridge's tests again, with the forum's database on PostgreSQL: the
//! harness runs a test binary whose name ends in `_pg` against PostgreSQL
//! (`flaskbbd_tests::backend`).

#[path = "flaskbb_bridge.rs"]
mod flaskbb_bridge;
