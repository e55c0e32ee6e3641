#!/usr/bin/env bash
# Installs FlaskBB 2.0.2 from PyPI into a virtual environment, for the bridge's tests
# and benchmarks (FlaskBB 2.2 needs Python 3.12; 2.0.2 runs on 3.11 with the pins in
# flaskbb-2.0.2.txt and the three patches below).
#
#   install-flaskbb.sh DIR [PYTHON]
#
# DIR receives venv/ (FlaskBB and its dependencies) and migrations/ (FlaskBB's alembic
# scripts, which only its source distribution carries). Takes about a minute.
set -euo pipefail
dir=$1
python=${2:-python3}
here=$(cd "$(dirname "$0")" && pwd)

mkdir -p "$dir"
"$python" -m venv "$dir/venv"
pip=("$dir/venv/bin/pip" --disable-pip-version-check --no-cache-dir -q)
# --no-deps: FlaskBB pins its dependencies exactly, to releases that pip's resolver
# would otherwise try to replace.
"${pip[@]}" install --no-deps -r "$here/flaskbb-2.0.2.txt"

site=$("$dir/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
patch_file() { # FILE SED-SCRIPT: fails when the pattern is not there (a changed pin)
  grep -q "$3" "$1" || { echo "install-flaskbb.sh: $1 has no '$3'; the pins changed?" >&2; exit 1; }
  sed -i "$2" "$1"
}
# 1. vine 1.3.0 imports inspect.formatargspec, which Python 3.11 removed (unused there).
patch_file "$site/vine/five.py" \
  's/^    from inspect import formatargspec, getfullargspec$/    from inspect import getfullargspec/' \
  'from inspect import formatargspec'
# 2. FlaskBB's settings subclass collections.MutableMapping (collections.abc since 3.3,
#    gone from collections in 3.10).
patch_file "$site/flaskbb/utils/settings.py" \
  's/^import collections$/import collections.abc/; s/collections\.MutableMapping/collections.abc.MutableMapping/' \
  'collections.MutableMapping'
# 3. pkg_resources re-checks FlaskBB's exact pins whenever it loads a plugin's entry
#    point and refuses with VersionConflict: drop FlaskBB's declared requirements (the
#    versions installed above are the ones it wants).
sed -i '/^Requires-Dist:/d' "$site/FlaskBB-2.0.2.dist-info/METADATA"

# FlaskBB's alembic migrations ship in the source distribution only.
"${pip[@]}" download --no-deps --no-binary :all: flaskbb==2.0.2 -d "$dir/sdist"
tar xzf "$dir/sdist/FlaskBB-2.0.2.tar.gz" -C "$dir" --strip-components=1 FlaskBB-2.0.2/migrations
