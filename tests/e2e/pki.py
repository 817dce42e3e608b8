"""Test PKI: a CA, Envoy's server certificate and SPIFFE client certificates.

Identities in the e2e tests come from mTLS exactly as in a mesh: the client certificate
carries a SPIFFE ID as its URI SAN and Envoy exposes it to the filter. Everything is
generated fresh per pytest session (EC P-256, fast) so no key material is checked in.

Also a CLI, for trying examples/envoy.yaml by hand:
    python tests/e2e/pki.py .cache/pki spiffe://cluster.local/ns/agents/sa/alice
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TRUST_DOMAIN = "cluster.local"


def spiffe_sa(name: str, namespace: str = "agents", trust_domain: str = TRUST_DOMAIN) -> str:
    """The SPIFFE ID KAN derives from a ServiceAccount source."""
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{name}"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Grantwall e2e"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    path.with_name(path.name + ".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = path.with_name(path.name + "-key.pem")
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)


@dataclass
class _Ca:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, cn: str) -> "_Ca":
        key = _key()
        now = _dt.datetime.now(_dt.timezone.utc)
        cert = (x509.CertificateBuilder()
                .subject_name(_name(cn)).issuer_name(_name(cn))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=2))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        return cls(cert, key)

    def issue(self, cn: str, sans: Sequence[x509.GeneralName], usage: x509.ObjectIdentifier,
              ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = _key()
        now = _dt.datetime.now(_dt.timezone.utc)
        builder = (x509.CertificateBuilder()
                   .subject_name(_name(cn)).issuer_name(self.cert.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                                  critical=False))
        if sans:
            # A SPIFFE SVID's SAN is critical when the subject is empty; harmless here either way.
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key


@dataclass
class Pki:
    """A directory of PEM files: ca.pem, server.pem/server-key.pem and client certs on demand."""

    dir: Path
    _ca: _Ca
    _rogue: _Ca
    _clients: dict[tuple, tuple[Path, Path]] = field(default_factory=dict)

    @classmethod
    def create(cls, directory: Path) -> "Pki":
        directory.mkdir(parents=True, exist_ok=True)
        pki = cls(directory, _Ca.create("Grantwall e2e CA"), _Ca.create("Rogue CA (not trusted by Envoy)"))
        (directory / "ca.pem").write_bytes(pki._ca.cert.public_bytes(serialization.Encoding.PEM))
        cert, key = pki._ca.issue("localhost", [x509.DNSName("localhost"),
                                                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
                                  ExtendedKeyUsageOID.SERVER_AUTH)
        _write(directory / "server", cert, key)
        return pki

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.dir / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.dir / "server-key.pem"

    def client(self, spiffe_id: str | None, *, extra_uris: Sequence[str] = (), dns: Sequence[str] = (),
               untrusted: bool = False) -> tuple[Path, Path]:
        """(cert_path, key_path) of a client certificate whose URI SAN is `spiffe_id`.

        `spiffe_id=None` gives a certificate without any URI SAN (an mTLS peer with no SPIFFE
        identity); `extra_uris` adds more URI SANs (ambiguous identities); `untrusted` signs
        it with a CA Envoy does not trust (the handshake then fails, since Envoy validates any
        certificate that is presented). Certificates are cached per argument set.
        """
        cache_key = (spiffe_id, tuple(extra_uris), tuple(dns), untrusted)
        if cache_key in self._clients:
            return self._clients[cache_key]
        uris = ([spiffe_id] if spiffe_id else []) + list(extra_uris)
        sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
        sans += [x509.DNSName(d) for d in dns]
        label = (spiffe_id or "no-uri").rsplit("/", 1)[-1]
        slug = base = re.sub(r"[^A-Za-z0-9_.-]", "_", f"client-{label}" + ("-rogue" if untrusted else ""))
        n = 1
        while (self.dir / f"{slug}.pem").exists():
            n += 1
            slug = f"{base}-{n}"
        cert, key = (self._rogue if untrusted else self._ca).issue(label, sans, ExtendedKeyUsageOID.CLIENT_AUTH)
        _write(self.dir / slug, cert, key)
        paths = (self.dir / f"{slug}.pem", self.dir / f"{slug}-key.pem")
        self._clients[cache_key] = paths
        return paths


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[1])
    for stale in out.glob("client-*.pem"):  # signed by the CA being replaced
        stale.unlink()
    pki = Pki.create(out)
    print(f"CA:     {pki.ca_cert}\nserver: {pki.server_cert} {pki.server_key}")
    for spiffe_id in argv[2:] or [spiffe_sa("alice")]:
        cert, key = pki.client(spiffe_id)
        print(f"client: {cert} {key}  ({spiffe_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
