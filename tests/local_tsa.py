"""A real RFC 3161 TSA for tests: OpenSSL's `openssl ts -reply` behind a tiny local HTTP
handler, with a test CA and a TSA certificate (critical timeStamping EKU) made here."""

from __future__ import annotations

import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CONFIG = """
[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
dir = {dir}
serial = {dir}/serial
signer_cert = {dir}/tsa.pem
certs = {dir}/tsa.pem
signer_key = {dir}/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
crypto_device = builtin
other_policies = 1.2.3.4.2
[ v3_tsa ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,timeStamping
"""


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(folder: Path, name: str, chain: bool = False) -> None:
    """A self-signed test CA (`ca.pem`, `ca.key`) and a TSA certificate it issued; `chain`:
    the TSA's tokens carry the CA's certificate too (`certs = ca.pem`, as OpenSSL puts it:
    its SET OF certificates not DER-sorted)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = CONFIG.format(dir=folder)
    if chain:
        config = config.replace(f"certs = {folder}/tsa.pem", f"certs = {folder}/ca.pem")
    (folder / "tsa.cnf").write_text(config)
    (folder / "serial").write_text("01\n")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    _run(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "30",
        "-subj",
        f"/CN={name} test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
        cwd=folder,
    )
    _run(
        "req", *ec, "-keyout", "tsa.key", "-out", "tsa.csr", "-subj", f"/CN={name} TSA", cwd=folder
    )
    _run(
        "x509",
        "-req",
        "-in",
        "tsa.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "tsa.pem",
        "-days",
        "30",
        "-extfile",
        "tsa.cnf",
        "-extensions",
        "v3_tsa",
        cwd=folder,
    )


@dataclass
class LocalTsa:
    folder: Path
    url: str = ""
    down: bool = False
    answered: int = field(default=0)
    refused: int = field(default=0)

    @property
    def ca_pem(self) -> Path:
        return self.folder / "ca.pem"

    def reply(self, query: bytes) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            q, r = Path(tmp) / "q.tsq", Path(tmp) / "r.tsr"
            q.write_bytes(query)
            _run(
                "ts",
                "-reply",
                "-config",
                str(self.folder / "tsa.cnf"),
                "-queryfile",
                str(q),
                "-out",
                str(r),
                cwd=self.folder,
            )
            return r.read_bytes()


@contextmanager
def local_tsa(
    folder: Path, name: str = "local", port: int = 0, chain: bool = False
) -> Iterator[LocalTsa]:
    make_ca(folder, name, chain)
    tsa = LocalTsa(folder)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            query = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if tsa.down:
                tsa.refused += 1
                self.send_error(503, "down for maintenance")
                return
            try:
                answer = tsa.reply(query)
            except subprocess.CalledProcessError:
                self.send_error(400, "bad query")
                return
            tsa.answered += 1
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    tsa.url = f"http://127.0.0.1:{server.server_port}/tsa"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tsa
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    """`python -m tests.local_tsa FOLDER PORT`: the same TSA as its own process (benchmarks run
    it apart from the process they measure, as a TSA would be another party's machine)."""
    import sys
    import time

    folder, port = Path(sys.argv[1]), int(sys.argv[2])
    with local_tsa(folder, "bench", port=port) as tsa:
        print(tsa.url, flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
