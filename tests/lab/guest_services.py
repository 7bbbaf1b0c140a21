"""The services a booted guest image meets in tests/lab/test_guest.py, run inside its network namespace:
Nova's metadata service (EC2 paths on 169.254.169.254:80, each instance's from a folder named by its
address, as Neutron's proxy tells Nova which instance asks: an item it lacks is a 404, as Nova answers
for user data nobody gave) and the internet probe the smoke step fetches (it answers with the
caller's address, as http://checkip.amazonaws.com/ does).

    python3 guest_services.py METADATA_FOLDER PROBE_IP PROBE_PORT   (METADATA_FOLDER/<guest IP>/latest/...)

Prints "ready" once both listen; each request is logged on stderr.
"""

from __future__ import annotations

import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer

METADATA_IP = "169.254.169.254"


class Metadata(SimpleHTTPRequestHandler):
    folder = "."

    def do_GET(self) -> None:
        self.directory = os.path.join(self.folder, self.client_address[0])
        super().do_GET()


class Probe(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"{self.client_address[0]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main(folder: str, probe_ip: str, probe_port: str) -> None:
    Metadata.folder = folder
    servers = [
        ThreadingHTTPServer((METADATA_IP, 80), Metadata),
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
