#!/usr/bin/env python3
"""A SIP OPTIONS flood from many source addresses, as a scanner farm sends it, for the
edge's cost figures (doc/performance.md, "The edge under a flood").

    sip_flood.py TARGET RATE SECONDS SOURCE...

Sends RATE OPTIONS datagrams a second in total to TARGET:5060, round robin over one
socket bound to each SOURCE address (the addresses must be on an interface of this
host or its network namespace), for SECONDS, paced in 1 ms slices. Prints how many it
sent. Each message is a well-formed OPTIONS with its own Call-ID, so that Asterisk
parses and answers every one as it would a real sweep's.
"""
import socket
import sys
import time


def message(target, source, port, n):
    return (
        f"OPTIONS sip:100@{target} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {source}:{port};branch=z9hG4bK-{n}\r\n"
        f"From: <sip:100@{source}>;tag={n}\r\n"
        f"To: <sip:100@{target}>\r\n"
        f"Call-ID: {n}-flood@{source}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Max-Forwards: 70\r\n"
        "User-Agent: friendly-scanner\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def main():
    target, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    sockets = []
    for source in sys.argv[4:]:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.bind((source, 0))
        sockets.append((s, source, s.getsockname()[1]))
    # A few messages per source, made once: the sender is not what is measured.
    made = [[message(target, src, port, i * 7919 + k) for k in range(4)] for i, (_, src, port) in enumerate(sockets)]
    per_slice = rate / 1000.0
    sent, owed, i = 0, 0.0, 0
    start = time.monotonic()
    end = start + seconds
    next_slice = start
    while True:
        now = time.monotonic()
        if now >= end:
            break
        owed += per_slice
        while owed >= 1:
            s, _, _ = sockets[i % len(sockets)]
            try:
                s.sendto(made[i % len(sockets)][(i // len(sockets)) % 4], (target, 5060))
                sent += 1
            except BlockingIOError:
                pass
            owed -= 1
            i += 1
        next_slice += 0.001
        delay = next_slice - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    print(f"sent {sent} in {time.monotonic() - start:.2f} s")


if __name__ == "__main__":
    main()
