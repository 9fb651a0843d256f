"""The floor under any proxy written in Python: a blocking relay with one thread per connection,
one reused buffer, and nothing else (no auth, no headers, no event loop).  Only for the download
scenario: `python relay.py LISTEN_PORT BACKEND_PORT`; it forwards the request head as it is and
relays a response with a Content-Length, then closes."""

from __future__ import annotations

import socket
import sys
import threading


def handle(client: socket.socket, backend_port: int) -> None:
    with client, socket.create_connection(("127.0.0.1", backend_port)) as backend:
        request = b""
        while b"\r\n\r\n" not in request:
            data = client.recv(65536)
            if not data:
                return
            request += data
        backend.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            head += backend.recv(65536)
        head, rest = head.split(b"\r\n\r\n", 1)
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
        client.sendall(head + b"\r\n\r\n" + rest)
        left, view = length - len(rest), memoryview(bytearray(1 << 20))
        while left:
            n = backend.recv_into(view, min(left, len(view)))
            if not n:
                break
            client.sendall(view[:n])
            left -= n


def main() -> None:
    listen_port, backend_port = int(sys.argv[1]), int(sys.argv[2])
    server = socket.create_server(("127.0.0.1", listen_port))
    while True:
        client, _ = server.accept()
        threading.Thread(target=handle, args=(client, backend_port), daemon=True).start()


if __name__ == "__main__":
    main()
