"""A small DNS message codec (RFC 1035, plus SRV, AAAA and the EDNS OPT record): enough
for the cluster DNS server to read queries and write answers, and for tests to read them.

``Message.parse(data)`` reads a message (names with compression pointers); ``encode()``
writes one, compressing names. Record data is kept decoded for the types kumo answers
(A, AAAA, CNAME, PTR, NS, SRV, SOA, TXT) and as raw bytes otherwise.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AAAA",
    "ANY",
    "CLASS_IN",
    "CNAME",
    "FORMERR",
    "NOERROR",
    "NOTIMP",
    "NS",
    "NXDOMAIN",
    "OPT",
    "PTR",
    "REFUSED",
    "SERVFAIL",
    "SOA",
    "SRV",
    "TXT",
    "A",
    "DNSError",
    "Message",
    "Question",
    "Record",
    "normalize_name",
]

A, NS, CNAME, SOA, PTR, TXT, AAAA, SRV, OPT, ANY = 1, 2, 5, 6, 12, 16, 28, 33, 41, 255
CLASS_IN = 1
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5

TYPE_NAMES = {
    A: "A",
    NS: "NS",
    CNAME: "CNAME",
    SOA: "SOA",
    PTR: "PTR",
    TXT: "TXT",
    AAAA: "AAAA",
    SRV: "SRV",
    OPT: "OPT",
    ANY: "ANY",
}
_NAME_TYPES = (CNAME, PTR, NS)
_MAX_POINTERS = 64


class DNSError(ValueError):
    """The bytes are not a well-formed DNS message."""


def normalize_name(name: str) -> str:
    """Lower case, no trailing dot ("" is the root)."""
    return name.rstrip(".").lower()


@dataclass(frozen=True, slots=True)
class Question:
    name: str
    qtype: int
    qclass: int = CLASS_IN


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record. ``data`` is: an address string (A, AAAA), a name (CNAME,
    PTR, NS), ``(priority, weight, port, target)`` (SRV), ``(mname, rname, serial,
    refresh, retry, expire, minimum)`` (SOA), a tuple of strings (TXT), else bytes."""

    name: str
    rtype: int
    ttl: int
    data: Any
    rclass: int = CLASS_IN


@dataclass(slots=True)
class Message:
    id: int = 0
    qr: bool = False
    opcode: int = 0
    aa: bool = False
    tc: bool = False
    rd: bool = False
    ra: bool = False
    rcode: int = NOERROR
    questions: list[Question] = field(default_factory=list)
    answers: list[Record] = field(default_factory=list)
    authority: list[Record] = field(default_factory=list)
    additional: list[Record] = field(default_factory=list)

    # ---- reading ------------------------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes) -> Message:
        if len(data) < 12:
            raise DNSError("message shorter than its header")
        ident, flags, qd, an, ns, ar = struct.unpack("!6H", data[:12])
        message = cls(
            id=ident,
            qr=bool(flags & 0x8000),
            opcode=(flags >> 11) & 0xF,
            aa=bool(flags & 0x0400),
            tc=bool(flags & 0x0200),
            rd=bool(flags & 0x0100),
            ra=bool(flags & 0x0080),
            rcode=flags & 0xF,
        )
        offset = 12
        for _ in range(qd):
            name, offset = _read_name(data, offset)
            if offset + 4 > len(data):
                raise DNSError("truncated question")
            qtype, qclass = struct.unpack("!2H", data[offset : offset + 4])
            offset += 4
            message.questions.append(Question(name, qtype, qclass))
        for count, section in (
            (an, message.answers),
            (ns, message.authority),
            (ar, message.additional),
        ):
            for _ in range(count):
                record, offset = _read_record(data, offset)
                section.append(record)
        return message

    # ---- writing ------------------------------------------------------------------------

    def encode(self) -> bytes:
        flags = (
            (0x8000 if self.qr else 0)
            | ((self.opcode & 0xF) << 11)
            | (0x0400 if self.aa else 0)
            | (0x0200 if self.tc else 0)
            | (0x0100 if self.rd else 0)
            | (0x0080 if self.ra else 0)
            | (self.rcode & 0xF)
        )
        out = bytearray(
            struct.pack(
                "!6H",
                self.id,
                flags,
                len(self.questions),
                len(self.answers),
                len(self.authority),
                len(self.additional),
            )
        )
        names: dict[str, int] = {}
        for question in self.questions:
            _write_name(out, question.name, names)
            out += struct.pack("!2H", question.qtype, question.qclass)
        for record in [*self.answers, *self.authority, *self.additional]:
            _write_record(out, record, names)
        return bytes(out)

    def reply(self) -> Message:
        """An empty response to this query: same id, opcode, question and RD flag."""
        return Message(
            id=self.id,
            qr=True,
            opcode=self.opcode,
            rd=self.rd,
            ra=True,
            questions=list(self.questions[:1]),
        )

    def edns_payload(self) -> int | None:
        """The UDP payload size the sender accepts (its OPT record), or None."""
        for record in self.additional:
            if record.rtype == OPT:
                return max(512, record.rclass)
        return None


# ---- names ------------------------------------------------------------------------------


def _read_name(data: bytes, offset: int) -> tuple[str, int]:
    labels: list[str] = []
    end: int | None = None
    jumps = 0
    while True:
        if offset >= len(data):
            raise DNSError("name runs past the end of the message")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(data):
                raise DNSError("truncated compression pointer")
            jumps += 1
            if jumps > _MAX_POINTERS:
                raise DNSError("compression pointer loop")
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            continue
        if length & 0xC0:
            raise DNSError("unsupported label type")
        offset += 1
        if length == 0:
            break
        if offset + length > len(data):
            raise DNSError("label runs past the end of the message")
        labels.append(data[offset : offset + length].decode("ascii", errors="replace"))
        offset += length
        if sum(len(label) + 1 for label in labels) > 255:
            raise DNSError("name longer than 255 bytes")
    return ".".join(labels), end if end is not None else offset


def _write_name(out: bytearray, name: str, names: dict[str, int] | None) -> None:
    labels = [label for label in name.rstrip(".").split(".") if label] if name else []
    for i in range(len(labels)):
        suffix = ".".join(labels[i:]).lower()
        if names is not None and suffix in names:
            out += struct.pack("!H", 0xC000 | names[suffix])
            return
        if names is not None and len(out) < 0x3FFF:
            names[suffix] = len(out)
        raw = labels[i].encode("ascii", errors="replace")
        if len(raw) > 63:
            raise DNSError(f"label {labels[i]!r} is longer than 63 bytes")
        out.append(len(raw))
        out += raw
    out.append(0)


# ---- records ----------------------------------------------------------------------------


def _read_record(data: bytes, offset: int) -> tuple[Record, int]:
    name, offset = _read_name(data, offset)
    if offset + 10 > len(data):
        raise DNSError("truncated record")
    rtype, rclass, ttl, length = struct.unpack("!2HIH", data[offset : offset + 10])
    offset += 10
    end = offset + length
    if end > len(data):
        raise DNSError("record data runs past the end of the message")
    raw = data[offset:end]
    value: Any = raw
    if rtype == A and length == 4:
        value = str(ipaddress.IPv4Address(raw))
    elif rtype == AAAA and length == 16:
        value = str(ipaddress.IPv6Address(raw))
    elif rtype in _NAME_TYPES:
        value, _ = _read_name(data, offset)
    elif rtype == SRV and length >= 7:
        priority, weight, port = struct.unpack("!3H", raw[:6])
        target, _ = _read_name(data, offset + 6)
        value = (priority, weight, port, target)
    elif rtype == SOA:
        mname, at = _read_name(data, offset)
        rname, at = _read_name(data, at)
        if at + 20 > len(data):
            raise DNSError("truncated SOA record")
        value = (mname, rname, *struct.unpack("!5I", data[at : at + 20]))
    elif rtype == TXT:
        texts, at = [], 0
        while at < len(raw):
            size = raw[at]
            texts.append(raw[at + 1 : at + 1 + size].decode("utf-8", errors="replace"))
            at += 1 + size
        value = tuple(texts)
    return Record(name, rtype, ttl, value, rclass), end


def _write_record(out: bytearray, record: Record, names: dict[str, int]) -> None:
    _write_name(out, record.name, names)
    out += struct.pack("!2HI", record.rtype, record.rclass, record.ttl & 0xFFFFFFFF)
    at = len(out)
    out += b"\0\0"  # the length, filled in below
    data = record.data
    if record.rtype == A:
        out += ipaddress.IPv4Address(data).packed
    elif record.rtype == AAAA:
        out += ipaddress.IPv6Address(data).packed
    elif record.rtype in _NAME_TYPES:
        _write_name(out, str(data), names)
    elif record.rtype == SRV:
        priority, weight, port, target = data
        out += struct.pack("!3H", priority, weight, port)
        _write_name(out, target, None)  # RFC 2782: no compression of the target
    elif record.rtype == SOA:
        mname, rname, *numbers = data
        _write_name(out, mname, names)
        _write_name(out, rname, names)
        out += struct.pack("!5I", *numbers)
    elif record.rtype == TXT:
        for text in data:
            raw = str(text).encode()[:255]
            out.append(len(raw))
            out += raw
    else:
        out += bytes(data)
    struct.pack_into("!H", out, at, len(out) - at - 2)
