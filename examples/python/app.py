"""A stdlib HTTP server: answers / with the release and a config var."""
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = ("Hello from Python (release %s) %s\n" % (
            os.environ.get("APP_VERSION", "unknown"), os.environ.get("GREETING", ""))).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "5000"))), Hello).serve_forever()
