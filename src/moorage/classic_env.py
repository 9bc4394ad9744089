"""The 2014 docker-registry's environment variables, read as Moorage settings.

The classic private registry was started as::

    docker run -e SETTINGS_FLAVOR=s3 -e AWS_BUCKET=... -e STORAGE_PATH=/registry \\
               -e STORAGE_REDIRECT=true -p 5000:5000 registry

so those names keep working unchanged. This module is the pure mapping: it takes an
environment (any mapping of names to values) and returns the nested settings it implies, the
same shape as the YAML file. The settings layer decides where that sits in the precedence
(flags > ``MOORAGE_*`` > classic variables > YAML file > defaults).

=========================  ===================================  ==============================
classic variable           setting                              note
=========================  ===================================  ==============================
``SETTINGS_FLAVOR``        ``storage.backend``                  ``s3``; ``local``/``dev`` mean
                                                                the filesystem
``AWS_BUCKET``             ``storage.s3.bucket``
``STORAGE_PATH``           ``storage.s3.prefix``                leading ``/`` dropped; with the
                                                                ``local`` flavor it is
                                                                ``storage.data_dir``
``STORAGE_REDIRECT``       ``storage.s3.redirect``              true/false, any case
``AWS_REGION``             ``storage.s3.region``
``AWS_KEY``/``AWS_SECRET`` ``storage.s3.access_key_id``/...     the old registry's names
``AWS_ACCESS_KEY_ID``...   the same                             the AWS SDKs' names
``AWS_SESSION_TOKEN``      ``storage.s3.session_token``         with the SDK names only
``AWS_ENDPOINT_URL``       ``storage.s3.endpoint_url``          MinIO, Ceph RGW, moto
=========================  ===================================  ==============================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Flavors of the classic registry's config_sample.yml that Moorage can serve.
_FLAVORS = {"s3": "s3", "local": "filesystem", "dev": "filesystem"}

# What the classic registry accepted for booleans: its config loader parsed values as YAML 1.1.
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}

# Every variable this module reads: `config check` and the docs list them.
CLASSIC_VARIABLES = (
    "SETTINGS_FLAVOR",
    "AWS_BUCKET",
    "STORAGE_PATH",
    "STORAGE_REDIRECT",
    "AWS_REGION",
    "AWS_KEY",
    "AWS_SECRET",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
)


class ClassicEnvError(ValueError):
    """A classic variable holds a value Moorage cannot use; the message names the variable
    (never its value, which may be a secret)."""


def _get(environ: Mapping[str, str], name: str) -> str | None:
    # `docker run -e NAME=` sets an empty value; the classic registry treated it as unset.
    value = environ.get(name, "").strip()
    return value or None


def _flag(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ClassicEnvError(f"{name} must be true or false")


def _credentials(environ: Mapping[str, str]) -> dict[str, str]:
    """A key and its secret come as a pair from one naming scheme, never mixed: the old
    registry's ``AWS_KEY``/``AWS_SECRET`` (set for the registry alone) win over the SDKs'
    ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``. None at all means the AWS default chain
    (profile, EC2 instance role)."""
    for key_name, secret_name, token_name in (
        ("AWS_KEY", "AWS_SECRET", None),
        ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"),
    ):
        key, secret = _get(environ, key_name), _get(environ, secret_name)
        if key is None and secret is None:
            continue
        if key is None or secret is None:
            missing = key_name if key is None else secret_name
            present = secret_name if key is None else key_name
            raise ClassicEnvError(f"{present} is set but {missing} is not; set both or neither")
        found = {"access_key_id": key, "secret_access_key": secret}
        token = _get(environ, token_name) if token_name else None
        if token is not None:
            found["session_token"] = token
        return found
    return {}


def classic_settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings the classic variables in ``environ`` imply, as a nested dict (empty when
    none is set). Raises :class:`ClassicEnvError` naming the variable at fault."""
    s3: dict[str, Any] = {}
    storage: dict[str, Any] = {}

    flavor = _get(environ, "SETTINGS_FLAVOR")
    if flavor is not None:
        backend = _FLAVORS.get(flavor.lower())
        if backend is None:
            supported = ", ".join(sorted(_FLAVORS))
            raise ClassicEnvError(
                f"SETTINGS_FLAVOR={flavor!r} is not supported (Moorage serves {supported})"
            )
        storage["backend"] = backend

    if (path := _get(environ, "STORAGE_PATH")) is not None:
        # The classic meaning depended on the flavor: a directory for local storage, a key
        # prefix in the bucket for s3 (where "/registry" meant the prefix "registry").
        if storage.get("backend") == "filesystem":
            storage["data_dir"] = path
        else:
            s3["prefix"] = path.lstrip("/")
    if (redirect := _get(environ, "STORAGE_REDIRECT")) is not None:
        s3["redirect"] = _flag("STORAGE_REDIRECT", redirect)
    for variable, key in (
        ("AWS_BUCKET", "bucket"),
        ("AWS_REGION", "region"),
        ("AWS_ENDPOINT_URL", "endpoint_url"),
    ):
        if (value := _get(environ, variable)) is not None:
            s3[key] = value
    s3.update(_credentials(environ))

    if s3:
        storage["s3"] = s3
    return {"storage": storage} if storage else {}
