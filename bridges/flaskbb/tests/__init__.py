"""The bridge's tests: a real FlaskBB 2.0.2, driven over HTTP as a browser would,
with a real flaskbbd on the forum's own database. Run by ``cargo test --workspace``
(``tests/tests/flaskbb_bridge.rs`` in the flaskbbd repository), which builds the
daemon and plugins, installs FlaskBB, and passes where everything is through the
environment (see ``support.Environment``)."""
