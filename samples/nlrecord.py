#!/usr/bin/python3
"""Record the kernel audit multicast stream (NETLINK_AUDIT, group AUDIT_NLGRP_READLOG).

    nlrecord.py OUT.bin [READY_FILE]

Writes every netlink message as the kernel sent it: the 16-byte nlmsghdr followed by its
payload, exactly nlmsg_len bytes, back to back without alignment padding. Creates
READY_FILE (if given) once subscribed, and stops on SIGTERM/SIGINT after draining what is
already queued. Needs CAP_AUDIT_READ (root).
"""
import os
import signal
import socket
import struct
import sys
import time

NETLINK_AUDIT = 9
AUDIT_NLGRP_READLOG = 1
SO_RCVBUFFORCE = 33
RCVBUF = 64 * 1024 * 1024
HDR = struct.Struct("<IHHII")

stop = False


def on_signal(_signum, _frame):
    global stop
    stop = True


def split(buf):
    """Yield each nlmsg of one datagram, unpadded (a multicast datagram holds one)."""
    off = 0
    while off + HDR.size <= len(buf):
        length = HDR.unpack_from(buf, off)[0]
        if length < HDR.size or off + length > len(buf):
            # Not a well-formed header: keep the remainder as-is rather than lose it.
            yield buf[off:]
            return
        yield buf[off:off + length]
        off += (length + 3) & ~3


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.bind((0, AUDIT_NLGRP_READLOG))
    sock.settimeout(0.2)
    frames = overruns = 0
    with open(sys.argv[1], "wb") as out:
        if len(sys.argv) == 3:
            with open(sys.argv[2], "w") as ready:
                ready.write(f"{os.getpid()}\n")
        deadline = None
        while True:
            if stop and deadline is None:
                deadline = time.monotonic() + 2.0  # drain what is queued, briefly
            if deadline is not None and time.monotonic() > deadline:
                break
            try:
                buf = sock.recv(1 << 20)
            except socket.timeout:
                if stop:
                    break
                continue
            except OSError as e:  # ENOBUFS: the receive queue overflowed
                overruns += 1
                print(f"nlrecord: {e}", file=sys.stderr)
                continue
            for msg in split(buf):
                out.write(msg)
                frames += 1
            out.flush()
    print(f"nlrecord: {frames} frames, {overruns} overruns", file=sys.stderr)


if __name__ == "__main__":
    main()
