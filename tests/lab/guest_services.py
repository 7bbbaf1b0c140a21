"""The services a booted guest image meets in tests/lab/test_guest.py, run inside its network namespace:
Nova's metadata service (EC2 paths on 169.254.169.254:80, served from a folder: an item it lacks is a
404, as Nova answers for user data nobody gave) and the internet probe the smoke step fetches (it
answers with the caller's address, as http://checkip.amazonaws.com/ does).

    python3 guest_services.py METADATA_FOLDER PROBE_IP PROBE_PORT

Prints "ready" once both listen; each request is logged on stderr.
"""

from __future__ import annotations

import functools
import sys
import threading
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer

METADATA_IP = "169.254.169.254"


class Probe(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"{self.client_address[0]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main(folder: str, probe_ip: str, probe_port: str) -> None:
    servers = [
        ThreadingHTTPServer((METADATA_IP, 80), functools.partial(SimpleHTTPRequestHandler, directory=folder)),
        ThreadingHTTPServer((probe_ip, int(probe_port)), Probe),
    ]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    print("ready", flush=True)
    for t in threads:
        t.join()


if __name__ == "__main__":
    main(*sys.argv[1:])
