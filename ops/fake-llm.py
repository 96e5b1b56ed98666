#!/usr/bin/python3
"""A one-answer OpenAI-compatible server for ops/check-unit.sh: every POST to
.../chat/completions is answered "pong from the fake model". Prints its port."""
import http.server
import json
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = json.dumps({
            "id": "chatcmpl-check", "object": "chat.completion", "model": "check",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "pong from the fake model"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
sys.stdout.close()
server.serve_forever()
