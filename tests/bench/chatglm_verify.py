"""Verify Bubble's ChatGLM support against THUDM's real files (local check, never part of CI).

Nothing from THUDM is stored in this repository: the script reads their code from git mirrors of the
hub repos and the real tokenizer files from another mirror, builds tiny random-weight models under a
work folder (2 layers, hidden 64; weights saved ONCE by the old transformers and loaded by both
sides), and compares, token for token at temperature 0 over two chat turns, streamed:

* reference: the model's own ``stream_chat`` on transformers 4.33.3 (v1, int4, v2) / 4.41.2 (v3),
  unpatched, each in its own venv (``python3 -m venv /tmp/tf433 && /tmp/tf433/bin/pip install
  torch==2.13.0 transformers==4.33.3 sentencepiece protobuf``; same for /tmp/tf441 with 4.41.2);
* Bubble: ``load_remote_code_model`` on this venv's transformers (with the compat layer), both the
  raw ``stream_chat`` steps and the text our ``Generation`` streams.

It also records the first error the same folders give on this transformers *without* the compat
layer, checks that the compat layer hands every class out unchanged on the old transformers (and
the output stays equal there), and runs ``bubble-cli ask --trust-remote-code`` (streamed) on each.
Prints one JSON object; exit status 0 when everything matched.

    .venv/bin/python tests/bench/chatglm_verify.py --mirrors /work/.mirror --work /tmp/glm
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

SOURCES = {
    # variant: (mirror folder, commit, files)
    "v1": (
        "greensheng+chatglm-6b",
        "8b7d3359",
        [
            "config.json",
            "configuration_chatglm.py",
            "modeling_chatglm.py",
            "quantization.py",
            "tokenization_chatglm.py",
            "tokenizer_config.json",
        ],
    ),
    "int4": (
        "greensheng+chatglm-6b",
        "39d67d63",
        [
            "config.json",
            "configuration_chatglm.py",
            "modeling_chatglm.py",
            "quantization.py",
            "quantization_kernels.c",
            "quantization_kernels_parallel.c",
            "tokenization_chatglm.py",
            "tokenizer_config.json",
        ],
    ),
    "v2": (
        "syjjhl+chatglm2-6b",
        "8fd7fba2",
        [
            "config.json",
            "configuration_chatglm.py",
            "modeling_chatglm.py",
            "quantization.py",
            "tokenization_chatglm.py",
            "tokenizer_config.json",
        ],
    ),
    "v3": (
        "czk1997+chatglm3-copy",
        "456aa875",
        [
            "config.json",
            "configuration_chatglm.py",
            "modeling_chatglm.py",
            "quantization.py",
            "tokenization_chatglm.py",
            "tokenizer_config.json",
        ],
    ),
}
TOKENIZERS = (
    "woai3c+lowcode-llm-demo",
    "5a1ffa6f",
    {"ice_text.model": ("v1", "int4"), "tokenizer.model": ("v2", "v3")},
)
OLD_VENV = {"v1": "/tmp/tf433", "int4": "/tmp/tf433", "v2": "/tmp/tf433", "v3": "/tmp/tf441"}
QUERIES = ["你好，请介绍一下你自己。", "What is 2+2? 用中文回答"]
MAX_NEW = 40

# run by the OLD venv: build the tiny random-weight folder from the real code (weights saved once)
BUILD = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import torch
    from transformers import AutoConfig, AutoModel
    d, which = Path(sys.argv[1]), sys.argv[2]
    cfg = json.loads((d / "config.json").read_text())
    if which in ("v1", "int4"):
        cfg.update(hidden_size=64, num_layers=2, num_attention_heads=4, inner_hidden_size=256,
                   max_sequence_length=512, quantization_bit=0)
    else:
        cfg.update(hidden_size=64, num_layers=2, num_attention_heads=4, kv_channels=16,
                   multi_query_group_num=2,
                   ffn_hidden_size=128, seq_length=512)
    cfg["torch_dtype"] = "float32"
    (d / "config.json").write_text(json.dumps(cfg, indent=2))
    torch.manual_seed(1234)
    model = AutoModel.from_config(AutoConfig.from_pretrained(str(d), trust_remote_code=True),
                                  trust_remote_code=True).float()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.dim() >= 2:
                # v1's residual scaling lets a tied head just echo the input: bigger layers give varied text
                p.normal_(0, 1.0 if ("layers" in n and which in ("v1", "int4")) else 0.2)
            elif "norm" in n.lower() and n.endswith("weight"):
                p.fill_(1.0)
            else:
                p.normal_(0, 0.02)
        if which in ("v1", "int4"):
            model.lm_head.weight.copy_(model.transformer.word_embeddings.weight)
    if which == "int4":
        model.quantize(4)  # packs the weights with the real int4 code (CPU kernel compiled by gcc)
        cfg.update(quantization_bit=4, quantization_embeddings=False)
        (d / "config.json").write_text(json.dumps(cfg, indent=2))
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, d / "pytorch_model.bin")
""")

# run by the OLD venv: the reference stream, unpatched
REFERENCE = textwrap.dedent("""
    import json, sys
    import transformers
    from transformers import AutoModel, AutoTokenizer
    d, out, queries, max_new = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
    tok = AutoTokenizer.from_pretrained(d, trust_remote_code=True)
    model = AutoModel.from_pretrained(d, trust_remote_code=True).float().eval()
    history, turns = [], []
    for q in queries:
        steps = []
        for item in model.stream_chat(tok, q, history, do_sample=False, max_new_tokens=max_new):
            steps.append(item[0])
            history = item[1]
        turns.append({"query": q, "steps": steps})
    json.dump({"transformers": transformers.__version__, "turns": turns}, open(out, "w"), ensure_ascii=False)
""")


# run by the OLD venv: Bubble's compat layer there must hand every class out unchanged, same output
COMPAT_ON_OLD = textwrap.dedent("""
    import importlib.util, json, sys
    compat_py, d, ref_path, max_new = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    spec = importlib.util.spec_from_file_location("bubble_compat", compat_py)
    compat = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compat)
    cfg = json.load(open(d + "/config.json"))
    tok_ref = json.load(open(d + "/tokenizer_config.json"))["auto_map"]["AutoTokenizer"][0]
    classes = compat.resolve_compat_classes(d, cfg["auto_map"], tok_ref)
    unchanged = [compat.COMPAT_MARK not in c.__dict__ for c in classes]
    C, T, M = classes
    tok = T.from_pretrained(d)
    model = M.from_pretrained(d, config=C.from_pretrained(d))
    retied = compat.retie_output_embeddings(model)
    model = model.float().eval()
    ref = json.load(open(ref_path))
    history, equal = [], True
    for turn in ref["turns"]:
        steps = []
        for item in model.stream_chat(tok, turn["query"], history, do_sample=False, max_new_tokens=max_new):
            steps.append(item[0])
            history = item[1]
        equal = equal and steps == turn["steps"]
    print(json.dumps({"classes_unchanged": all(unchanged), "retied": retied, "equal": equal}))
""")


def compat_on_old(variant: str, d: Path, work: Path) -> dict:
    script = work / "compat_on_old.py"
    script.write_text(COMPAT_ON_OLD)
    compat_py = Path(__file__).resolve().parents[2] / "bubble_desktop/core/llm/chatglm/compat.py"
    cmd = [
        f"{OLD_VENV[variant]}/bin/python",
        str(script),
        str(compat_py),
        str(d),
        str(work / "ref" / f"{variant}.json"),
        str(MAX_NEW),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else {"error": r.stderr.strip()[-300:]}


def _git_show(mirror: Path, commit: str, name: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(mirror), "show", f"{commit}:{name}"], check=True, capture_output=True
    ).stdout


def build(variant: str, mirrors: Path, work: Path) -> Path:
    repo, commit, files = SOURCES[variant]
    d = work / "tiny" / variant
    d.mkdir(parents=True, exist_ok=True)
    for f in files:
        (d / f).write_bytes(_git_show(mirrors / repo / "repo", commit, f))
    tok_repo, tok_commit, tok_files = TOKENIZERS
    for name, variants in tok_files.items():
        if variant in variants:
            (d / name).write_bytes(_git_show(mirrors / tok_repo / "repo", tok_commit, name))
    script = work / "build_tiny.py"
    script.write_text(BUILD)
    subprocess.run(
        [f"{OLD_VENV[variant]}/bin/python", str(script), str(d), variant],
        check=True,
        capture_output=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    return d


def reference(variant: str, d: Path, work: Path) -> dict:
    script = work / "ref_stream.py"
    script.write_text(REFERENCE)
    out = work / "ref" / f"{variant}.json"
    out.parent.mkdir(exist_ok=True)
    subprocess.run(
        [
            f"{OLD_VENV[variant]}/bin/python",
            str(script),
            str(d),
            str(out),
            json.dumps(QUERIES, ensure_ascii=False),
            str(MAX_NEW),
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    return json.loads(out.read_text())


def unpatched_first_error(d: Path) -> str:
    """What this venv's transformers says about the folder without the compat layer (separate process)."""
    code = textwrap.dedent(f"""
        import transformers
        from transformers import AutoModel, AutoTokenizer
        try:
            tok = AutoTokenizer.from_pretrained({str(d)!r}, trust_remote_code=True)
            m = AutoModel.from_pretrained({str(d)!r}, trust_remote_code=True).float()
            for _ in m.stream_chat(tok, "hi", [], do_sample=False, max_new_tokens=2):
                pass
            print("OK")
        except Exception as e:
            print(type(e).__name__ + ": " + str(e).splitlines()[0][:160])
    """)
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    return (r.stdout.strip().splitlines() or [r.stderr.strip()[-200:]])[-1]


def ours(d: Path, ref: dict) -> dict:
    from bubble_desktop.core.llm.base import ChatMessage, LoadRequest
    from bubble_desktop.core.llm.chatglm import load_remote_code_model
    from bubble_desktop.core.settings import SamplingSettings

    t0 = time.perf_counter()
    model = load_remote_code_model(LoadRequest(path=str(d), trust_remote_code=True, device="cpu"))
    load_s = time.perf_counter() - t0
    greedy = SamplingSettings(
        temperature=0.0, max_new_tokens=MAX_NEW, repetition_penalty=1.0, system_prompt=""
    )
    messages: list[ChatMessage] = []
    turns = []
    for turn in ref["turns"]:
        messages.append(ChatMessage("user", turn["query"]))
        raw = list(model.stream_raw(messages, greedy))
        generation = model.stream(messages, greedy)
        text = generation.run()
        turns.append(
            {
                "steps": len(raw),
                "raw_steps_equal": raw == turn["steps"],
                "streamed_text_equal": text == turn["steps"][-1],
                "chunks": len(generation.text_parts),
                "tokens_per_s": round(generation.stats.tokens_per_s or 0.0, 1) if generation.stats else None,
            }
        )
        messages.append(ChatMessage("assistant", text))
    model.unload()
    return {"arch": model.info.arch, "load_s": round(load_s, 2), "turns": turns}


def cli_stream(d: Path) -> dict:
    from bubble_desktop.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(
            [
                "ask",
                "你好",
                "--model",
                str(d),
                "--trust-remote-code",
                "--temperature",
                "0",
                "--max-new-tokens",
                "12",
            ]
        )
    return {
        "rc": rc,
        "stdout_chars": len(out.getvalue().strip()),
        "stderr_tail": err.getvalue().strip()[-120:],
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mirrors", type=Path, default=Path("/work/.mirror"))
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "glm-verify")
    ap.add_argument("--variants", nargs="*", default=list(SOURCES))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("BUBBLE_HOME", str(args.work / "home"))
    import transformers

    report: dict = {"transformers": transformers.__version__, "variants": {}}
    for v in args.variants:
        d = build(v, args.mirrors, args.work)
        ref = reference(v, d, args.work)
        entry = {
            "reference_transformers": ref["transformers"],
            "unpatched_here": unpatched_first_error(d),
            "compat_on_reference_transformers": compat_on_old(v, d, args.work),
        }
        entry.update(ours(d, ref))
        entry["cli"] = cli_stream(d)
        old = entry["compat_on_reference_transformers"]
        entry["ok"] = (
            all(t["raw_steps_equal"] and t["streamed_text_equal"] for t in entry["turns"])
            and entry["cli"]["rc"] == 0
            and old.get("classes_unchanged") is True
            and old.get("equal") is True
        )
        report["variants"][v] = entry
    report["all_ok"] = all(e["ok"] for e in report["variants"].values())
    print(json.dumps(report, ensure_ascii=False, indent=1))
    return 0 if report["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
