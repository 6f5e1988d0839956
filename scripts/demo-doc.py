#!/usr/bin/env python3
"""Copies the results tables of the last scripts/demo.sh run into docs/demo.md.

    ./scripts/demo.sh && python3 scripts/demo-doc.py

docs/demo.md marks each table it shows with a comment naming the file demo.sh wrote,

    <!-- results: demo-out/first.results.txt -->
    ```
    ...
    ```

and this script replaces the fenced block after each marker with that file's text, headed by
the machine it ran on, so that the figures in the docs are the ones a run printed.
"""
import os
import platform
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "demo.md")
MARKER = re.compile(r"(<!-- results: (\S+) -->\n```\n)(.*?)(```\n)", re.S)


def machine():
    model = platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores"


def main():
    with open(DOC, encoding="utf-8") as f:
        doc = f.read()
    missing = []

    def table(m):
        path = os.path.join(ROOT, m.group(2))
        if not os.path.exists(path):
            missing.append(m.group(2))
            return m.group(0)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        return f"{m.group(1)}# kforge results, scripts/demo.sh on {machine()}\n{text}{m.group(4)}"

    doc, n = MARKER.subn(table, doc)
    if missing:
        print(f"demo-doc: no {', '.join(missing)}: run ./scripts/demo.sh first", file=sys.stderr)
        return 1
    with open(DOC, "w", encoding="utf-8") as f:
        f.write(doc)
    print(f"demo-doc: {n} tables in {DOC} updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
