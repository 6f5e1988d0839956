#!/usr/bin/env python3
"""A scripted Coder: an OpenAI-compatible chat-completions server (standard library only) that
answers kforge's Coder prompts with real Triton kernels from a pool of variants per op, so that
a search campaign on a GPU measures real speeds without a model (examples/gpu-search/README.md).

    python3 coder_server.py --pool variants [--port 0] [--port-file F] [--log F.jsonl]

The pool: variants/<op>/<k>_<name>.py, k = 0, 1, 2, ... in order of speed by construction
(0 the slowest), and x_<name>.py for kernels that fail verification on purpose. Each file's
first line names it: `# kforge-variant: <op>/<file stem>`, which is how the server recognises
a kernel it wrote when a prompt shows it again. Every request is answered at once by

- a first prompt (prompts/coder.md, "Implement the design below"): FRESH[seed % 4] of the op's
  ladder, seed = the request's "seed" (kforge sends sample k != 0 as seed k; 0 when absent):
  the second slowest, the slowest, the third, then a broken one where the op has one (else the
  slowest). So a fix_loop task (sample 0) starts from a slow-to-middling kernel, four samples
  see the third at best, and only "make it faster" reaches the fastest;
- the "make it faster" prompt (prompts/coder_improve.md): the next faster variant of the
  kernel to improve (the one under "## The kernel to improve"; inspirations are ignored), the
  fastest again when it is already the fastest;
- the fix prompt (prompts/coder_fix.md): the op's second variant, which is correct;
- the Designer's prompt: a one-line design (the campaign runs coder_only; this is a fallback).

A prompt whose op has no pool gets HTTP 400 (kforge does not retry it). Each answer is appended
to --log as one JSON line (kind, op, seed, parent, variant), for the summary's lineage.
"""
import argparse
import json
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MARKER = re.compile(r"^# kforge-variant: (\S+)$", re.M)
OP_LINE = re.compile(r"^- op: (\S+)\s*$", re.M)
# The first prompt's ladder positions: seed 0, 1, 2, 3 (then again); "x" = a broken variant.
FRESH = (1, 0, 2, "x")
FIX = 1  # the fix prompt's answer: the second variant of the ladder


class Pool:
    """variants/<op>/: the ladder (correct, slowest first) and the broken ones."""

    def __init__(self, root):
        self.ladder = {}
        self.broken = {}
        self.code = {}
        for op in sorted(os.listdir(root)):
            d = os.path.join(root, op)
            if not os.path.isdir(d):
                continue
            ladder, broken = [], []
            for f in sorted(os.listdir(d)):
                if not f.endswith(".py"):
                    continue
                name = f"{op}/{f[:-3]}"
                with open(os.path.join(d, f), encoding="utf-8") as fh:
                    text = fh.read()
                m = MARKER.search(text)
                if not m or m.group(1) != name:
                    raise ValueError(f"{d}/{f}: its first line must be '# kforge-variant: {name}'")
                self.code[name] = text
                (broken if f.startswith("x_") else ladder).append(name)
            if ladder:
                ladder.sort(key=lambda n: int(n.split("/")[1].split("_")[0]))
                self.ladder[op] = ladder
                self.broken[op] = broken

    def fresh(self, op, seed):
        pick = FRESH[seed % len(FRESH)]
        ladder = self.ladder[op]
        if pick == "x":
            if self.broken[op]:
                return self.broken[op][0]
            pick = 0
        return ladder[min(pick, len(ladder) - 1)]

    def faster(self, op, parent):
        ladder = self.ladder[op]
        if parent in ladder:
            return ladder[min(ladder.index(parent) + 1, len(ladder) - 1)]
        return ladder[min(FIX, len(ladder) - 1)]  # an unknown or broken parent: a correct one

    def fixed(self, op):
        ladder = self.ladder[op]
        return ladder[min(FIX, len(ladder) - 1)]


def section(text, heading):
    """The text under a '## heading' line, up to the next '## ' heading."""
    start = text.find("\n## " + heading)
    if start < 0:
        return ""
    start = text.find("\n", start + 1)
    end = text.find("\n## ", start)
    return text[start:end if end >= 0 else len(text)]


def classify(prompt):
    if "You are the Designer" in prompt:
        return "design"
    if "Make it faster" in prompt:
        return "improve"
    if "failed verification. Fix it." in prompt:
        return "fix"
    return "code"


def answer(pool, body):
    """-> (status, content or error, record for the log)."""
    messages = body.get("messages") or []
    prompt = "\n".join(m.get("content") or "" for m in messages if m.get("role") == "user")
    kind = classify(prompt)
    m = OP_LINE.search(prompt)
    op = m.group(1) if m else None
    seed = body.get("seed") or 0
    record = {"kind": kind, "op": op, "seed": seed}
    if kind == "design":
        return 200, "Use the approach of the kernel.\n\n```aul\n# no design: the Coder decides\n```\n", record
    if op not in pool.ladder:
        return 400, f"no variants for op {op!r} (pool: {', '.join(sorted(pool.ladder))})", record
    parent = None
    if kind == "improve":
        p = MARKER.search(section(prompt, "The kernel to improve"))
        parent = p.group(1) if p else None
        variant = pool.faster(op, parent)
        why = f"The kernel to improve is {parent}; the next faster variant is {variant}."
    elif kind == "fix":
        p = MARKER.search(section(prompt, "Your previous code"))
        parent = p.group(1) if p else None
        variant = pool.fixed(op)
        why = f"The previous kernel ({parent}) was wrong; {variant} is correct."
    else:
        variant = pool.fresh(op, int(seed))
        why = f"A first kernel for {op}: {variant}."
    record.update(parent=parent, variant=variant)
    return 200, f"{why}\n\n```python\n{pool.code[variant]}```\n", record


class Handler(BaseHTTPRequestHandler):
    pool = None
    log = None
    lock = threading.Lock()

    def log_message(self, fmt, *args):  # quiet: the JSONL log says what was asked
        pass

    def reply(self, status, doc):
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.rstrip("/").endswith("/health"):
            self.reply(200, {"ok": True, "ops": sorted(self.pool.ladder)})
        else:
            self.reply(404, {"error": {"message": "not found"}})

    def do_POST(self):
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self.reply(404, {"error": {"message": f"no route {self.path}"}})
            return
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        except ValueError as e:
            self.reply(400, {"error": {"message": f"bad JSON: {e}"}})
            return
        status, content, record = answer(self.pool, body)
        if self.log:
            with self.lock, open(self.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(record | {"status": status}) + "\n")
        if status != 200:
            self.reply(status, {"error": {"message": content}})
            return
        prompt_chars = sum(len(m.get("content") or "") for m in body.get("messages") or [])
        self.reply(200, {
            "id": "scripted", "object": "chat.completion", "model": body.get("model", "scripted"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": prompt_chars // 4, "completion_tokens": len(content) // 4},
        })


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "variants"))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="write the port here once listening")
    ap.add_argument("--log", help="append one JSON line per answer")
    args = ap.parse_args()
    Handler.pool = Pool(args.pool)
    Handler.log = args.log
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    port = server.server_address[1]
    if args.port_file:  # before the line below, so that whoever reads that line finds the file
        with open(args.port_file + ".tmp", "w") as f:
            f.write(f"{port}\n")
        os.replace(args.port_file + ".tmp", args.port_file)
    print(f"listening {port} ({len(Handler.pool.ladder)} ops: {', '.join(sorted(Handler.pool.ladder))})",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
