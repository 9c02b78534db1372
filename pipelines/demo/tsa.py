"""A local RFC 3161 time-stamping authority for demos and tests: OpenSSL's ``openssl ts -reply`` behind HTTP.

``python -m pipelines.demo.tsa FOLDER --port PORT`` creates, on first run, an
EC P-256 root CA and a TSA certificate under it (critical extended key usage
``timeStamping``) in FOLDER, then answers ``POST /`` with
``Content-Type: application/timestamp-query`` as RFC 3161 section 3.4 says.
FOLDER/ca.crt is the root an auditor pins. The ``certs`` line is left out of the
OpenSSL configuration on purpose: it would embed an unsorted certificate SET
that strict DER readers (rfc3161-client) refuse; the signer's certificate is
still included in every token.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_CONFIG = """\
[ tsa ]
default_tsa = local
[ local ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.crt
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.4146.2.3
other_policies = 1.3.6.1.4.1.4146.2.2
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def make_tsa(folder: Path, name: str = "anchorpipe demo TSA") -> Path:
    """Create the CA, the TSA key and certificate and OpenSSL's configuration in ``folder`` (once);
    return the root certificate's path."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "tsa.cnf").exists():
        return folder / "ca.crt"
    now = datetime.datetime.now(datetime.UTC)

    def cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
             issuer_key: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:
        b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(issuer.subject if issuer else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=False, key_encipherment=False,
                                          data_encipherment=False, key_agreement=False, key_cert_sign=ca,
                                          crl_sign=ca, encipher_only=False, decipher_only=False), critical=True))
        if not ca:
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        return b.sign(issuer_key, hashes.SHA256())

    ca_key, tsa_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = cert(f"{name} root", ca_key, None, ca_key, True)
    tsa = cert(name, tsa_key, ca, ca_key, False)
    pem = serialization.Encoding.PEM
    (folder / "ca.crt").write_bytes(ca.public_bytes(pem))
    (folder / "tsa.crt").write_bytes(tsa.public_bytes(pem))
    key_file = folder / "tsa.key"
    key_file.touch(mode=0o600)
    key_file.write_bytes(tsa_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    (folder / "serial").write_text("01\n")
    (folder / "tsa.cnf").write_text(_CONFIG.format(dir=folder.resolve()))
    return folder / "ca.crt"


def stamp(folder: Path, query: bytes) -> bytes:
    """OpenSSL's TimeStampResp to a DER TimeStampReq (a refusal is a response too); RuntimeError if OpenSSL fails."""
    with tempfile.TemporaryDirectory() as tmp:
        q, r = Path(tmp) / "req.tsq", Path(tmp) / "resp.tsr"
        q.write_bytes(query)
        res = subprocess.run(["openssl", "ts", "-reply", "-config", str(folder / "tsa.cnf"), "-queryfile", str(q),
                              "-out", str(r)], capture_output=True, timeout=30)
        if res.returncode != 0 or not r.exists():
            raise RuntimeError(res.stderr.decode(errors="replace")[-500:])
        return r.read_bytes()


def serve(folder: Path, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """An HTTP server answering time-stamp queries on ``port`` (call ``serve_forever``)."""
    make_tsa(folder)
    lock = threading.Lock()  # OpenSSL increments the serial file: one reply at a time

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.headers.get("Content-Type") != "application/timestamp-query":
                self.send_error(415, "want Content-Type: application/timestamp-query")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= 65536:
                self.send_error(400, "want a time-stamp query of at most 64 KiB")
                return
            try:
                with lock:
                    body = stamp(folder, self.rfile.read(length))
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                self.send_error(500, str(exc)[:200])
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # quiet: the demo prints its own progress
            pass

    return ThreadingHTTPServer((host, port), Handler)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path, help="where the CA, the TSA key and OpenSSL's files live")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()
    serve(args.folder, args.port, args.host).serve_forever()


if __name__ == "__main__":
    main()
