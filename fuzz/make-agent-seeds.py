#!/usr/bin/env python3
"""Writes the seeds of the agent_datagram target (fuzz/seeds/agent_datagram/).

Record format (see fuzz_targets/agent_datagram.rs): ctl, len (u16 LE), payload. ctl bit 0:
sealed body (else raw datagram); bits 1-2: sender (0 ShMC, 1 partner slot 4, 2 slot 5,
3 unknown); bit 3: replay the previous sequence; bit 4: to the ShMC; bit 5: tag bit flipped.
The golden frames of proto/tests/golden.rs are used raw and as sealed bodies.
"""
import hashlib
import os
import re
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "seeds", "agent_datagram")
GOLDEN = os.path.join(HERE, "..", "proto", "tests", "golden.rs")

SHMC, PARTNER, OTHER, UNKNOWN = 0, 1, 2, 3
CHUNK = 1024


def record(payload, sealed=True, sender=SHMC, replay=False, to_shmc=False, forged=False):
    ctl = (1 if sealed else 0) | sender << 1 | (8 if replay else 0) | (16 if to_shmc else 0)
    ctl |= 32 if forged else 0
    return bytes([ctl]) + struct.pack("<H", len(payload)) + payload


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def text(s):
    b = s.encode()
    return varint(len(b)) + b


def push(name, index, total, digest, chunk):
    return bytes([13]) + text(name) + varint(index) + varint(total) + digest + varint(len(chunk)) + chunk


def xml(name, pad=0):
    body = "<domain type='test'><name>%s</name><memory unit='KiB'>65536</memory>" % name
    body += "<description>%s</description></domain>" % ("x" * pad)
    return body.encode()


def fence_self(incident):
    return bytes([6]) + varint(incident)


def restart_partner(incident, slot, proof, subset=None):
    out = bytes([8]) + varint(incident) + bytes([slot, proof])
    if subset is None:
        return out + b"\x00"
    return out + b"\x01" + varint(len(subset)) + b"".join(text(n) for n in subset)


def restart_guest(incident, name):
    return bytes([10]) + varint(incident) + text(name)


def heartbeat(beat, health, protected, digest, running=0):
    # partner_heard_ms None, running, partner_seq None
    return (bytes([1]) + varint(beat) + bytes([health]) + varint(protected) + digest
            + b"\x00" + varint(running) + b"\x00")


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def main():
    os.makedirs(OUT, exist_ok=True)
    golden = re.findall(r'\(\s*"([0-9a-f]+)",\s*"([0-9a-f]+)",\s*"([0-9a-f]+)",\s*\)',
                        open(GOLDEN).read())
    orders = {6, 8, 9, 10, 16, 18}
    everything = b""
    for h, b, t in golden:
        frame = bytes.fromhex(h + b + t)
        body = bytes.fromhex(b)
        kind = body[0]
        write("golden_raw_%02d" % kind, record(frame, sealed=False))
        sender = SHMC if kind in orders else PARTNER
        sealed = record(body, sender=sender)
        write("golden_sealed_%02d" % kind, sealed)
        everything += sealed
    write("golden_sealed_all", everything)

    # A two-chunk partner definition whose last chunk comes twice, the second copy longer
    # (the reassembly crash), then the confirmed takeover that starts it.
    big = xml("pg", pad=CHUNK + 200)
    d = hashlib.sha256(big).digest()
    first, last = big[:CHUNK], big[CHUNK:]
    write("takeover_after_resent_last_chunk",
          record(push("pg", 1, 2, d, last[:40]), sender=PARTNER)
          + record(push("pg", 1, 2, d, last), sender=PARTNER)
          + record(push("pg", 0, 2, d, first), sender=PARTNER)
          + record(restart_partner(7, 4, 1))
          + record(restart_partner(7, 4, 1), replay=True)
          + record(restart_partner(8, 4, 0)))

    # One-chunk definitions, an unconfirmed and a confirmed subset takeover, a removal.
    small = xml("vm1")
    ds = hashlib.sha256(small).digest()
    write("push_restart_subset_remove",
          record(push("vm1", 0, 1, ds, small), sender=PARTNER)
          + record(restart_partner(9, 4, 0, ["vm1"]))
          + record(restart_partner(10, 4, 4, ["vm1"]))
          + record(bytes([14]) + text("vm1"), sender=PARTNER)
          + record(heartbeat(5, 0, 1, b"\xab" * 32), sender=PARTNER))

    # Self-fence, then orders that must start nothing on a fenced blade.
    write("fence_then_restarts",
          record(fence_self(11))
          + record(restart_guest(12, "crashed"))
          + record(push("vm1", 0, 1, ds, small), sender=PARTNER)
          + record(restart_partner(13, 4, 1)))

    # Orders from the wrong nodes, forged and replayed frames.
    write("wrong_senders",
          record(fence_self(14), sender=PARTNER)
          + record(restart_partner(15, 4, 1), sender=OTHER)
          + record(fence_self(16), sender=UNKNOWN)
          + record(fence_self(17), forged=True)
          + record(fence_self(18), to_shmc=True)
          + record(restart_guest(19, "crashed"))
          + record(restart_guest(19, "crashed"), replay=True))


if __name__ == "__main__":
    main()
