"""A certificate made by the test: trustme's CA and a certificate for 127.0.0.1 and localhost, as PEM files."""

from __future__ import annotations

from pathlib import Path


def make_pki(folder: Path) -> dict[str, Path]:
    """Write `ca.pem`, `cert.pem` (the chain) and `key.pem` into `folder`; return their paths by name."""
    import trustme  # a dev extra: callers importorskip it first

    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    paths = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    issued.private_key_pem.write_to_path(str(paths["key"]))
    with paths["cert"].open("wb") as chain:
        for blob in issued.cert_chain_pems:
            chain.write(blob.bytes())
    return paths
