#!/usr/bin/env python3
"""Fails if a 32-bit big-endian PowerPC ELF has FPU instructions in .text.

Usage: ppc-no-fpu.py BINARY

Counts words whose primary opcode is a classic FPU load/store (lfs 48, lfsu 49,
lfd 50, lfdu 51, stfs 52, stfsu 53, stfd 54, stfdu 55) or arithmetic (59, 63).
A soft-float build has none: the e500v2 and 405 have no classic FPU.
"""
import struct
import sys

FPU = {48: "lfs", 49: "lfsu", 50: "lfd", 51: "lfdu", 52: "stfs", 53: "stfsu", 54: "stfd",
       55: "stfdu", 59: "fp single", 63: "fp double"}

d = open(sys.argv[1], "rb").read()
if d[:4] != b"\x7fELF" or d[4] != 1 or d[5] != 2:
    sys.exit("not a 32-bit big-endian ELF")
shoff = struct.unpack(">I", d[32:36])[0]
shentsize, shnum, shstrndx = struct.unpack(">HHH", d[46:52])
secs = [struct.unpack(">10I", d[shoff + i * shentsize:shoff + i * shentsize + 40]) for i in range(shnum)]
names_off = secs[shstrndx][4]


def name(off):
    end = d.index(b"\0", names_off + off)
    return d[names_off + off:end].decode()


text = [s for s in secs if name(s[0]) == ".text"]
if not text:
    sys.exit("no .text section")
body = d[text[0][4]:text[0][4] + text[0][5]]
found = {}
for i in range(0, len(body) - 3, 4):
    op = struct.unpack(">I", body[i:i + 4])[0] >> 26
    if op in FPU:
        found[FPU[op]] = found.get(FPU[op], 0) + 1
if found:
    sys.exit("FPU instructions in .text: %s" % found)
print("no FPU instructions in %d bytes of .text" % len(body))
