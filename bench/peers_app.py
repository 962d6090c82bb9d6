#!/usr/bin/env python3
"""Misbehaving apps for bench/peers.sh: `peers_app.py MODE=HOST:PORT ...`, one listener each.

  ok       200, keep-alive
  app503   the app's own 503 with Retry-After: 30 (a proxy should pass it through)
  slow     200 after SLOW_SECONDS (2 s), keep-alive: holds a proxy's only turn
  stall    reads the request and never answers (until the peer closes)
  garbage  reads the request, answers a line that is not HTTP, closes
  reset    reads the request, resets the connection (RST) before any byte
  cut      reads the request, sends a 200 head for 1 MB and 1 KB of it, then resets

Listens on 127.0.0.1 only (the addresses given); stops on SIGTERM or SIGINT.
"""
import signal
import socket
import struct
import sys
import threading
import time

SLOW_SECONDS = 2.0


def read_head(conn):
    """Reads one request head (the bench sends no request bodies); b"" at EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
        if len(data) > 1 << 20:
            return b""
    return data


def reset(conn):
    # SO_LINGER on with a zero timeout: close() sends RST instead of FIN.
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def response(status, reason, body, extra=b""):
    return (b"HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n%s\r\n"
            % (status, reason, len(body), extra)) + body


def serve(mode, conn):
    try:
        while True:
            if not read_head(conn):
                break
            if mode == "ok":
                conn.sendall(response(200, b"OK", b"hello\n"))
            elif mode == "app503":
                conn.sendall(response(503, b"Service Unavailable", b"the app is down\n",
                                      b"retry-after: 30\r\n"))
            elif mode == "slow":
                time.sleep(SLOW_SECONDS)
                conn.sendall(response(200, b"OK", b"slow hello\n"))
            elif mode == "stall":
                while conn.recv(65536):
                    pass
                break
            elif mode == "garbage":
                conn.sendall(b"this is not HTTP at all\r\n\r\n")
                break
            elif mode == "reset":
                reset(conn)
                return
            elif mode == "cut":
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"
                             b"content-length: 1000000\r\n\r\n" + b"x" * 1024)
                time.sleep(0.2)
                reset(conn)
                return
    except OSError:
        pass
    try:
        conn.close()
    except OSError:
        pass


def listen(mode, addr):
    host, port = addr.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    sock.listen(1024)
    while True:
        conn, _ = sock.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve, args=(mode, conn), daemon=True).start()


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    for arg in sys.argv[1:]:
        mode, addr = arg.split("=", 1)
        threading.Thread(target=listen, args=(mode, addr), daemon=True).start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
