#!/usr/bin/env bash
# Install what the OpenStack control plane of the tests needs (tests/openstack_controlplane.py):
# MariaDB and RabbitMQ from Debian, and keystone, placement, glance and nova from PyPI
# into their own venv (default tests/openstack/.venv), pinned by constraints.txt, so
# that the services' pins never meet vacagent's own venv.
#   tests/openstack/install.sh [VENV]
# About 1 min (apt) + 2 min (pip) on 2 cores from nothing; seconds when already there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-$here/.venv}"

missing=""
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || missing="$missing mariadb-server"
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing="$missing rabbitmq-server"
if [ -n "$missing" ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    # The packages' own services are not wanted: the tests start their own instances.
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

packages="keystone nova glance openstack-placement gunicorn PyMySQL openstacksdk Werkzeug"
if [ ! -x "$venv/bin/nova-compute" ] || ! cmp -s "$here/constraints.txt" "$venv/constraints.txt"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q -c "$here/constraints.txt" $packages 2>&1 | sed '/is ignored: it is neither/d'
    "$venv/bin/python" -c "import nova, keystone, glance, placement, gunicorn, werkzeug"  # fail here, not in the tests
    cp "$here/constraints.txt" "$venv/constraints.txt"
fi
