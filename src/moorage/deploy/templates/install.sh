#!/bin/bash
# Installs and starts Moorage; run once by cloud-init (runcmd). Output: /var/log/cloud-init-output.log
set -euo pipefail

# --- parameters (rendered by `moorage deploy cloud-init`) ---
{{ parameters }}
# --- end parameters ---

VENV=/opt/moorage
CONFIG=/etc/moorage/moorage.yaml
HTPASSWD=/etc/moorage/htpasswd
PASSWORDS=/root/moorage-initial-passwords

echo "moorage: installing packages"
if command -v dnf >/dev/null 2>&1; then
    # Amazon Linux 2023, Fedora, RHEL 9: Python 3.11 sits beside the system's Python.
    dnf install -y python3.11 git
    PYTHON=python3.11
elif command -v apt-get >/dev/null 2>&1; then
    # Ubuntu 24.04, Debian 12.
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y python3 python3-venv git
    PYTHON=python3
else
    echo "moorage: no dnf or apt-get; install Python 3.11+ and git first" >&2
    exit 1
fi

echo "moorage: creating the moorage system user"
if ! id moorage >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/moorage --no-create-home \
        --shell /usr/sbin/nologin moorage
fi

echo "moorage: installing ${PACKAGE} into ${VENV}"
"${PYTHON}" -m venv "${VENV}"
"${VENV}/bin/pip" install --quiet --upgrade pip
"${VENV}/bin/pip" install --quiet "${PACKAGE}"
if [ -n "${SHARED_CONFIG}" ]; then
    # A cluster node talks to PostgreSQL: the driver of moorage's `postgres` extra.
    "${VENV}/bin/pip" install --quiet 'psycopg[binary]>=3.1'
fi

# The service reads its configuration through its group; nobody else may.
chown root:moorage /etc/moorage "${CONFIG}"
chmod 0750 /etc/moorage
chmod 0640 "${CONFIG}"

if [ -z "${REGION}" ]; then
    # No region configured: assume the bucket lives in this instance's region (IMDSv2).
    imds_token=$(curl -fsS -X PUT http://169.254.169.254/latest/api/token \
        -H "X-aws-ec2-metadata-token-ttl-seconds: 60")
    REGION=$(curl -fsS -H "X-aws-ec2-metadata-token: ${imds_token}" \
        http://169.254.169.254/latest/meta-data/placement/region)
    echo "AWS_REGION=${REGION}" > /etc/moorage/environment
    chmod 0644 /etc/moorage/environment
    echo "moorage: bucket region taken from the instance: ${REGION}"
fi

if [ -n "${SHARED_CONFIG}" ]; then
    # A cluster node: what every node must have identically (the token signing key and
    # certificate, users, policy, the database password) comes from one S3 prefix, read with
    # the instance role, never from the user-data. Change a file there, then re-run this copy
    # on each node (or replace the nodes) for it to take effect.
    echo "moorage: copying the cluster's shared files from ${SHARED_CONFIG}"
    env AWS_REGION="${REGION}" "${VENV}/bin/python" - "${SHARED_CONFIG}" /etc/moorage \
        "${SHARED_FILES[@]}" -- "${OPTIONAL_SHARED_FILES[@]}" <<'PY'
import os
import sys
from pathlib import Path

import obstore
from obstore.store import from_url

url, target, names = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
required, optional = names[: names.index("--")], names[names.index("--") + 1 :]
store = from_url(url.rstrip("/") + "/", region=os.environ["AWS_REGION"])
for name in required + optional:
    try:
        data = bytes(obstore.get(store, name).bytes())
    except FileNotFoundError:
        if name in optional:
            continue
        sys.exit(f"moorage: {url.rstrip('/')}/{name} is missing")
    path = target / name
    path.touch(mode=0o600)
    path.write_bytes(data)
PY
    for name in "${SHARED_FILES[@]}"; do
        chown root:moorage "/etc/moorage/${name}"
        chmod 0640 "/etc/moorage/${name}"
    done
    if [ -f /etc/moorage/pgpass ]; then
        # libpq ignores a password file that anyone but its owner may read.
        chown moorage:moorage /etc/moorage/pgpass
        chmod 0600 /etc/moorage/pgpass
        echo "PGPASSFILE=/etc/moorage/pgpass" >> /etc/moorage/environment
        chmod 0644 /etc/moorage/environment
    fi
fi

if [ "${#HTPASSWD_USERS[@]}" -gt 0 ]; then
    # Passwords are made here, on the instance, so none travels in the user-data (which the
    # EC2 API shows to anyone allowed to describe the instance). Read them as root, then
    # change them with `moorage user passwd`.
    echo "moorage: creating users; their passwords are in ${PASSWORDS} (root only)"
    umask 077
    touch "${PASSWORDS}"
    for user in "${HTPASSWD_USERS[@]}"; do
        password=$("${VENV}/bin/python" -c 'import secrets; print(secrets.token_urlsafe(24))')
        printf '%s\n' "${password}" \
            | "${VENV}/bin/moorage" user add "${user}" --password-stdin --htpasswd "${HTPASSWD}"
        printf '%s: %s\n' "${user}" "${password}" >> "${PASSWORDS}"
    done
    umask 022
    chown root:moorage "${HTPASSWD}"
    chmod 0640 "${HTPASSWD}"
fi

if [ -n "${TLS_KEY}" ]; then
    if [ -f "${TLS_KEY}" ] && [ -f "${TLS_CERT}" ]; then
        chgrp moorage "${TLS_KEY}" "${TLS_CERT}"
        chmod 0640 "${TLS_KEY}"
    else
        echo "moorage: WARNING: put the TLS certificate at ${TLS_CERT} and its key at" \
            "${TLS_KEY} (readable by group moorage), then: systemctl restart moorage" >&2
    fi
fi

echo "moorage: checking the configuration and the bucket"
"${VENV}/bin/moorage" config check "${CONFIG}" >/dev/null
if ! env AWS_REGION="${REGION}" "${VENV}/bin/moorage" storage check --config "${CONFIG}"; then
    echo "moorage: WARNING: the bucket is not usable yet; the service will retry" >&2
fi

echo "moorage: starting the service"
systemctl daemon-reload
systemctl enable --now moorage.service
echo "moorage: done"
