"""The bridge's test harness: a real FlaskBB (installed by ``install-flaskbb.sh``)
on a database it made itself, its own HTTP server, a real flaskbbd on that database,
and a browser that keeps cookies and sends CSRF tokens. Used by ``tests/`` and by the
flaskbbd repository's Rust tests and benchmarks (``forum.py make``)."""
