"""A TLS front for the relay's test: a local certificate authority (made here, with the
`cryptography` package), and a TLS server on 127.0.0.1 presenting a certificate it signed for
the names asked, recording the name each client asked for (SNI), and piping the decrypted
bytes to the fake WeChat. It stands where api.weixin.qq.com's TLS would, so that nginx's
certificate check and SNI are what the test sees."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: Path, key, cert) -> None:
    path.with_suffix(".key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class Authority:
    """A certificate authority of the test's own: its certificate file is what nginx trusts."""

    def __init__(self, directory: Path, name: str = "Relay Test CA"):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder()
                     .subject_name(_name(name)).issuer_name(_name(name))
                     .public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                     .add_extension(x509.KeyUsage(
                         digital_signature=True, key_cert_sign=True, crl_sign=True,
                         content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, encipher_only=False,
                         decipher_only=False), True)
                     .sign(self.key, hashes.SHA256()))
        self.path = directory / f"{name.replace(' ', '-').lower()}.pem"
        _write(self.path, self.key, self.cert)

    def issue(self, *names: str) -> Path:
        """A server certificate for `names`; the path of its .pem (the key beside it)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder()
                .subject_name(_name(names[0])).issuer_name(self.cert.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(
                    [x509.DNSName(n) for n in names]), False)
                .add_extension(x509.ExtendedKeyUsage(
                    [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
                .sign(self.key, hashes.SHA256()))
        path = self.directory / f"{names[0]}.pem"
        _write(path, key, cert)
        return path


class TlsFront:
    """TLS on 127.0.0.1 with `certificate`, each connection piped to `upstream_port`."""

    def __init__(self, certificate: Path, upstream_port: int):
        self.server_names: list[str | None] = []
        self.upstream_port = upstream_port
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certificate, certificate.with_suffix(".key"))
        self.context.sni_callback = self._record_name
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._running = True
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    def start(self) -> "TlsFront":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._running = False
        self._thread.join(timeout=5)
        self._listener.close()

    def use(self, certificate: Path) -> None:
        self.context.load_cert_chain(certificate, certificate.with_suffix(".key"))

    def _record_name(self, _socket, server_name, _context):
        self.server_names.append(server_name)

    def _serve(self) -> None:
        while self._running:
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        try:
            client.settimeout(30)
            secure = self.context.wrap_socket(client, server_side=True)
        except (ssl.SSLError, OSError):
            client.close()  # the relay refused the certificate: nothing goes on
            return
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30)

        def copy(source, target):
            try:
                while data := source.recv(65536):
                    target.sendall(data)
            except OSError:
                pass
            finally:
                for end in (source, target):
                    try:
                        end.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        back = threading.Thread(target=copy, args=(upstream, secure), daemon=True)
        back.start()
        copy(secure, upstream)
        back.join(timeout=30)
        secure.close()
        upstream.close()
