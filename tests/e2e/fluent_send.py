"""Fluent Forward clients for tests/fluentforward.rs.

usage: fluent_send.py <port or unix socket path> <mode>

modes (each sends records whose `log` is "<mode> <i>", a `level` and an `n`):
  FLUENT_LOGGER  fluent-logger (PyPI), Message mode with EventTime, 3 records
  FORWARD        Forward mode, 3 entries, integer and EventTime times, chunk "c-forward"
  PACKED         PackedForward (concatenated entries as bin), 3 entries, chunk "c-packed"
  COMPRESSED     CompressedPackedForward (gzip), 3 entries, chunk "c-gzip"
  UNIX           Message mode over a Unix socket, 3 records, the last with chunk "c-unix"
The chunk modes wait for the server's {"ack": <chunk>} (ACK_TIMEOUT seconds, default 10)
and fail without it. Built with the
msgpack library (PyPI) from the Forward Protocol Specification v1.
"""

import gzip
import os
import socket
import sys
import time

import msgpack

target, mode = sys.argv[1], sys.argv[2]


def event_time(t):
    sec, ns = divmod(t, 10**9)
    return msgpack.ExtType(0, sec.to_bytes(4, "big") + ns.to_bytes(4, "big"))


def rec(i):
    return {"log": f"{mode} {i}", "level": "info", "n": i}


def connect():
    if mode == "UNIX":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(target)
    else:
        s = socket.create_connection(("127.0.0.1", int(target)))
    s.settimeout(float(os.environ.get("ACK_TIMEOUT", "10")))
    return s


def wait_ack(s, chunk):
    unpacker = msgpack.Unpacker(raw=False)
    while True:
        data = s.recv(4096)
        if not data:
            sys.exit(f"connection closed before the ack of {chunk}")
        unpacker.feed(data)
        for msg in unpacker:
            if msg != {"ack": chunk}:
                sys.exit(f"unexpected answer {msg!r}")
            return


now = time.time_ns()
if mode == "FLUENT_LOGGER":
    from fluent import sender

    logger = sender.FluentSender("app", host="127.0.0.1", port=int(target), nanosecond_precision=True)
    for i in range(3):
        if not logger.emit("web", rec(i)):
            sys.exit(f"fluent-logger failed: {logger.last_error}")
    logger.close()
elif mode == "FORWARD":
    s = connect()
    entries = [[now // 10**9, rec(0)], [event_time(now), rec(1)], [event_time(now + 1), rec(2)]]
    s.sendall(msgpack.packb(["app.forward", entries, {"chunk": "c-forward"}]))
    wait_ack(s, "c-forward")
elif mode in ("PACKED", "COMPRESSED"):
    s = connect()
    stream = b"".join(msgpack.packb([event_time(now + i), rec(i)]) for i in range(3))
    if mode == "PACKED":
        msg = ["app.packed", stream, {"chunk": "c-packed"}]
        chunk = "c-packed"
    else:
        msg = ["app.gzip", gzip.compress(stream), {"chunk": "c-gzip", "compressed": "gzip", "size": 3}]
        chunk = "c-gzip"
    # Sent in small pieces: the server must assemble a message from many reads.
    data = msgpack.packb(msg, use_bin_type=True)
    for i in range(0, len(data), 7):
        s.sendall(data[i : i + 7])
    wait_ack(s, chunk)
elif mode == "UNIX":
    s = connect()
    for i in range(2):
        s.sendall(msgpack.packb(["app.unix", event_time(now + i), rec(i)]))
    s.sendall(msgpack.packb(["app.unix", event_time(now + 2), rec(2), {"chunk": "c-unix"}]))
    wait_ack(s, "c-unix")
else:
    sys.exit(f"unknown mode {mode}")
print("sent")
