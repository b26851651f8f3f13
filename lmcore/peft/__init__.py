"""Parameter-efficient fine-tuning: LoRA, bottleneck adapters, prompt tuning and BitFit,
with Hugging Face PEFT's names, so adapters move between the two libraries.

Example:
    >>> import numpy as np
    >>> from lmcore.models import GPT, GPTConfig
    >>> from lmcore.peft import LoraConfig, get_peft_model
    >>> gpt = GPT(GPTConfig(vocab_size=30, block_size=16, n_layer=2, n_head=2, n_embd=16))
    >>> ids = np.arange(8)[None]                                     # (B, T)
    >>> before = gpt(ids).numpy()
    >>> model = get_peft_model(gpt, LoraConfig(r=2, lora_alpha=4, target_modules=["c_attn", "c_proj"]))
    >>> bool(np.allclose(model(ids).numpy(), before))               # B = 0: unchanged at start
    True
"""

from lmcore.peft.adapters import (
    Adapted,
    AdapterConfig,
    BitFitConfig,
    BottleneckAdapter,
    PromptTuningConfig,
)
from lmcore.peft.lora import LoraConfig, LoraLinear, find_target_modules, inject_lora
from lmcore.peft.model import PeftModel, PromptTuningModel, get_peft_model, hf_module_paths

__all__ = [
    "AdapterConfig",
    "Adapted",
    "BitFitConfig",
    "BottleneckAdapter",
    "LoraConfig",
    "LoraLinear",
    "PeftModel",
    "PromptTuningConfig",
    "PromptTuningModel",
    "find_target_modules",
    "get_peft_model",
    "hf_module_paths",
    "inject_lora",
]
