#!/usr/bin/env python3
"""Tests of the scripted Coder (coder_server.py) without a GPU: the pool's files, and its
answers over real HTTP on loopback to prompts rendered from kforge's own templates
(prompts/coder.md, coder_fix.md, coder_improve.md).

    python3 -m unittest examples/gpu-search/test_coder_server.py
"""
import json
import os
import py_compile
import re
import subprocess
import sys
import tempfile
import tomllib
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import coder_server  # noqa: E402

POOL = os.path.join(HERE, "variants")


def render(template, **values):
    """prompts/<template>.md with {{name}} filled (empty where not given), as kforge does."""
    with open(os.path.join(ROOT, "prompts", template + ".md"), encoding="utf-8") as f:
        text = f.read()
    return re.sub(r"\{\{(\w+)\}\}", lambda m: str(values.get(m.group(1), "")), text)


def code_block(content):
    m = re.search(r"```python\n(.*?)```", content, re.S)
    return m.group(1) if m else None


def marker(code):
    m = coder_server.MARKER.search(code or "")
    return m.group(1) if m else None


class PoolFiles(unittest.TestCase):
    def test_every_variant_compiles_and_names_itself(self):
        pool = coder_server.Pool(POOL)  # raises on a file whose marker is not its own name
        with tempfile.TemporaryDirectory() as tmp:
            for name in pool.code:
                op, stem = name.split("/")
                py_compile.compile(os.path.join(POOL, op, stem + ".py"),
                                   cfile=os.path.join(tmp, stem + ".pyc"), doraise=True)
                self.assertIn("@triton.jit", pool.code[name], name)
                self.assertIn("class ModelNew", pool.code[name], name)

    def test_every_op_of_the_campaign_has_a_ladder_of_four(self):
        with open(os.path.join(HERE, "campaign.toml"), "rb") as f:
            campaign = tomllib.load(f)
        pool = coder_server.Pool(POOL)
        ops = [op["op_name"] for op in campaign["ops"]]
        self.assertGreaterEqual(len(ops), 6)
        for op in ops:
            self.assertEqual(len(pool.ladder.get(op, [])), 4, op)
            self.assertEqual([n.split("/")[1][0] for n in pool.ladder[op]], ["0", "1", "2", "3"])
        self.assertEqual(sorted(ops), sorted(pool.ladder))

    def test_every_strategy_table_appends_to_the_campaign(self):
        with open(os.path.join(HERE, "campaign.toml"), encoding="utf-8") as f:
            base = f.read()
        for strategy in ("fix_loop", "best_of_n", "evolve"):
            with open(os.path.join(HERE, "search", strategy + ".toml"), encoding="utf-8") as f:
                doc = tomllib.loads(base + f.read())
            self.assertEqual(doc["search"]["strategy"], strategy)
            self.assertGreater(doc["search"]["max_device_seconds"], 0)


class Server(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        port_file = os.path.join(cls.tmp.name, "port")
        cls.log = os.path.join(cls.tmp.name, "answers.jsonl")
        cls.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "coder_server.py"), "--pool", POOL,
             "--port-file", port_file, "--log", cls.log],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = cls.proc.stdout.readline()  # "listening PORT (...)", printed once it listens
        if not line.startswith("listening "):
            cls.proc.kill()
            raise RuntimeError(f"coder_server did not start: {line!r}")
        cls.url = f"http://127.0.0.1:{int(line.split()[1])}/v1"
        with open(port_file) as f:
            assert int(f.read()) == int(line.split()[1])

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(timeout=10)
        cls.proc.stdout.close()
        cls.tmp.cleanup()

    def ask(self, prompt, seed=None):
        body = {"model": "scripted", "temperature": 0.2, "max_tokens": 4096,
                "messages": [{"role": "system", "content": "You write kernels."},
                             {"role": "user", "content": prompt}]}
        if seed is not None:
            body["seed"] = seed
        req = urllib.request.Request(self.url + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            doc = json.load(r)
        return doc["choices"][0]["message"]["content"], doc["usage"]

    def first(self, op, seed=None):
        content, _ = self.ask(render("coder", op_name=op, impl_type="triton", backend="cuda",
                                     task_desc="class Model: ...\ndef get_inputs(): ..."), seed)
        return marker(code_block(content))

    def test_first_prompt_by_seed(self):
        self.assertEqual(self.first("softmax"), "softmax/1_row_w2")  # sample 0 sends no seed
        self.assertEqual(self.first("softmax", 1), "softmax/0_loop3pass_c256_w1")
        self.assertEqual(self.first("softmax", 2), "softmax/2_row_w8")
        self.assertEqual(self.first("softmax", 3), "softmax/x_no_max")
        self.assertEqual(self.first("softmax", 4), "softmax/1_row_w2")
        self.assertEqual(self.first("row_sum", 3), "row_sum/0_loop64_w1")  # no broken one

    def test_improve_gives_the_next_faster_of_the_parent_not_of_the_inspirations(self):
        pool = coder_server.Pool(POOL)
        ladder = pool.ladder["matmul"]
        for i, parent in enumerate(ladder):
            prompt = render("coder_improve", op_name="matmul", impl_type="triton",
                            previous_code=pool.code[parent],
                            verifier_message="passed; speedup 0.5",
                            inspirations="### kernel 1\n```python\n" + pool.code[ladder[-1]] + "```\n")
            content, _ = self.ask(prompt, seed=7)
            self.assertEqual(marker(code_block(content)), ladder[min(i + 1, len(ladder) - 1)])

    def test_fix_gives_a_correct_variant(self):
        pool = coder_server.Pool(POOL)
        prompt = render("coder_fix", op_name="gelu", impl_type="triton",
                        previous_code=pool.code["gelu/x_erf"],
                        verifier_message="precision_mismatch")
        content, usage = self.ask(prompt, seed=3)
        self.assertEqual(marker(code_block(content)), "gelu/1_unfused2_b1024_w4")
        self.assertGreater(usage["completion_tokens"], 0)
        last = self.answers()[-1]
        self.assertEqual((last["kind"], last["parent"]), ("fix", "gelu/x_erf"))

    def test_designer_prompt_gets_a_design(self):
        content, _ = self.ask(render("designer", op_name="gelu", impl_type="triton"))
        self.assertIn("```aul", content)

    def test_unknown_op_is_a_400(self):
        with self.assertRaises(urllib.error.HTTPError) as e:
            self.first("conv2d")
        self.assertEqual(e.exception.code, 400)
        self.assertIn("no variants for op 'conv2d'", e.exception.read().decode())

    def answers(self):
        with open(self.log, encoding="utf-8") as f:
            return [json.loads(line) for line in f]


if __name__ == "__main__":
    unittest.main()
