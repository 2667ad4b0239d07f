"""A tiny DNS server on 127.0.0.1 for the relay's tests: it answers A queries for the names it
is given (with a one-second TTL) and records every query, so that a test can move an address
and see nginx follow it, and see that nginx never asks for an IPv6 address. Standard library
only; UDP, one question per query, as nginx's resolver sends."""

from __future__ import annotations

import socket
import struct
import threading

TYPE_A, TYPE_AAAA = 1, 28


class FakeDNS:
    def __init__(self):
        self.addresses: dict[str, str] = {}  # name -> IPv4 address
        self.queries: list[tuple[str, int]] = []  # (name, type)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self._running = True
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1]

    def start(self) -> "FakeDNS":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._running = False
        self._thread.join(timeout=5)
        self._socket.close()

    def _serve(self) -> None:
        while self._running:
            try:
                query, client = self._socket.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                return
            answer = self._answer(query)
            if answer:
                self._socket.sendto(answer, client)

    def _answer(self, query: bytes) -> bytes | None:
        if len(query) < 12:
            return None
        ident, _flags, questions = struct.unpack(">HHH", query[:6])
        if questions != 1:
            return None
        labels, at = [], 12
        while at < len(query) and query[at]:
            length = query[at]
            labels.append(query[at + 1:at + 1 + length].decode("ascii", "replace"))
            at += 1 + length
        qtype, _qclass = struct.unpack(">HH", query[at + 1:at + 5])
        question = query[12:at + 5]
        name = ".".join(labels).lower()
        self.queries.append((name, qtype))
        address = self.addresses.get(name)
        records = b""
        count = 0
        if qtype == TYPE_A and address:
            records = (b"\xc0\x0c" + struct.pack(">HHIH", TYPE_A, 1, 1, 4)
                       + socket.inet_aton(address))
            count = 1
        rcode = 0 if address else 3  # NXDOMAIN for a name it does not know
        header = struct.pack(">HHHHHH", ident, 0x8180 | rcode, 1, count, 0, 0)
        return header + question + records
