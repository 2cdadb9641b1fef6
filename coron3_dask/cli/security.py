"""TLS for the cluster's traffic: ``--tls-ca-file``, ``--tls-cert``, ``--tls-key`` (or Dask's own config).

With the three options the client authenticates the scheduler against the CA and presents its
own certificate, and plain-TCP connections are refused (``require_encryption``).  Without them a
``tls://`` address uses Dask's ``distributed.comm.tls`` configuration (``DASK_DISTRIBUTED__COMM__TLS__*``
or a YAML file), as ``dask scheduler`` and ``dask worker`` do.  ``deploy/tls/README.md`` shows how
to make the certificates and start a TLS-only cluster.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from coron3_dask.config import ConfigError

__all__ = ["client_security", "tls_args"]


def tls_args(group: argparse._ArgumentGroup) -> None:
    """Add the TLS options to the execution group of a sub-command."""
    group.add_argument("--tls-ca-file", type=Path, metavar="PEM", help="CA certificate that signed the cluster's")
    group.add_argument("--tls-cert", type=Path, metavar="PEM", help="this client's certificate (signed by that CA)")
    group.add_argument("--tls-key", type=Path, metavar="PEM", help="this client's private key (if not in --tls-cert)")


def client_security(args: argparse.Namespace) -> Any:
    """Return the ``distributed.Security`` for the client, or None to use Dask's configuration.

    Raises
    ------
    ConfigError
        A TLS option without the others it needs, or a file that does not exist (naming it).
    """
    ca, cert, key = (getattr(args, name, None) for name in ("tls_ca_file", "tls_cert", "tls_key"))
    if not (ca or cert or key):
        return None
    if not (ca and cert):
        raise ConfigError("TLS needs at least --tls-ca-file and --tls-cert (and --tls-key unless the key is in it)")
    for option, path in (("--tls-ca-file", ca), ("--tls-cert", cert), ("--tls-key", key)):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{option} {path}: no such file")
    from distributed import Security

    return Security(
        tls_ca_file=str(ca),
        tls_client_cert=str(cert),
        tls_client_key=str(key) if key else None,
        require_encryption=True,
    )
