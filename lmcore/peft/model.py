"""``get_peft_model``: wrap a model for parameter-efficient fine-tuning, as Hugging Face
PEFT does, and save or load the adapter alone in PEFT's file layout.

The base model is changed in place, not copied: its targeted layers are wrapped
(:class:`~lmcore.peft.lora.LoraLinear`, :class:`~lmcore.peft.adapters.Adapted`), every
base parameter is frozen, and only the new ones (plus a task head, if any) train.
:meth:`PeftModel.save_pretrained` writes ``adapter_config.json`` and
``adapter_model.safetensors`` with PEFT's names (``base_model.model.<Hugging Face module
path>.lora_A.weight``), so a LoRA adapter trained in lmcore loads in PEFT onto the
equivalent ``transformers`` model, and the other way round.

Example:
    >>> import numpy as np
    >>> from lmcore.models import GPT, GPTConfig
    >>> from lmcore.peft import LoraConfig, get_peft_model
    >>> gpt = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32))
    >>> model = get_peft_model(gpt, LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"]))
    >>> model.print_trainable_parameters()
    trainable params: 1,024 || all params: 28,608 || trainable%: 3.5794
    >>> model(np.zeros((1, 5), np.int64)).shape                      # GPT's forward
    (1, 5, 50)
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np

from lmcore import backend
from lmcore import functional as F
from lmcore.atomic import write_atomically
from lmcore.autograd import Tensor
from lmcore.nn.layers import LayerNorm
from lmcore.nn.module import Module, Parameter
from lmcore.peft.adapters import (
    Adapted,
    AdapterConfig,
    BitFitConfig,
    PromptTuningConfig,
    default_adapter_targets,
)
from lmcore.peft.lora import (
    LoraConfig,
    find_target_modules,
    inject_lora,
    lora_layers,
    remove_lora,
)

__all__ = ["PeftModel", "PromptTuningModel", "get_peft_model", "hf_module_paths"]

CONFIG_NAME, WEIGHTS_NAME = "adapter_config.json", "adapter_model.safetensors"
_LORA_KEY = re.compile(r"base_model\.model\.(.+)\.(lora_A|lora_B)\.weight")
# Settings of PEFT's LoraConfig that lmcore's LoRA does not follow, with the value it has.
_UNSUPPORTED = {
    "use_dora": False,
    "rank_pattern": {},
    "alpha_pattern": {},
    "layers_to_transform": None,
}


def _head_names(model: Module) -> list[str]:
    """Dotted paths of the task head of a :mod:`lmcore.models.heads` model (it trains
    under every method, as PEFT's ``modules_to_save``)."""
    from lmcore.models.heads import SequenceClassifier, TokenClassifier

    return [
        f"{name}.{head}" if name else head
        for name, module in model.named_modules()
        if isinstance(module, (SequenceClassifier, TokenClassifier))
        for head in ("score", "classifier")
        if head in module._modules
    ]


class PeftModel(Module):
    """A model wrapped for parameter-efficient fine-tuning: calls go to the base model
    (``model(x, y)``, and attributes such as ``config`` or ``generate`` it lacks itself).

    Example:
        >>> from lmcore import nn
        >>> from lmcore.peft import LoraConfig, get_peft_model
        >>> net = get_peft_model(nn.Sequential(nn.Linear(4, 4)), LoraConfig(r=2, target_modules=["0"]))
        >>> net.get_nb_trainable_parameters()
        (16, 36)
    """

    def __init__(self, model: Module, peft_config, modules_to_save: list[str] | None = None):
        super().__init__()
        self.base_model = model
        self.peft_config = peft_config
        self.modules_to_save = list(modules_to_save or [])

    def forward(self, *args, **kwargs):
        return self.base_model(*args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            base = self.__dict__["_modules"].get("base_model")
            if base is None or name.startswith("_"):
                raise
            return getattr(base, name)

    # -- counting ----------------------------------------------------------------------
    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """(trainable parameters, all parameters), shared ones counted once."""
        return self.num_parameters(only_trainable=True), self.num_parameters()

    def num_parameters(self, only_trainable: bool = False) -> int:
        return Module.num_parameters(self, only_trainable)

    def print_trainable_parameters(self) -> None:
        """Print the counts as PEFT does."""
        trainable, total = self.get_nb_trainable_parameters()
        print(
            f"trainable params: {trainable:,d} || all params: {total:,d} || "
            f"trainable%: {100 * trainable / total:.4f}"
        )

    # -- LoRA merging ----------------------------------------------------------------------
    def merge_adapter(self) -> None:
        """Merge every LoRA update into its base weight (see ``LoraLinear.merge``)."""
        for layer in self._lora_layers().values():
            layer.merge()

    def unmerge_adapter(self) -> None:
        """Take every merged LoRA update out of its base weight again."""
        for layer in self._lora_layers().values():
            layer.unmerge()

    def merge_and_unload(self) -> Module:
        """The base model with the LoRA updates merged into its weights and the wrappers
        removed: a plain model again, as fast as the original."""
        self._lora_layers()
        remove_lora(self.base_model, merge=True)
        return self.base_model

    def unload(self) -> Module:
        """The base model as it was before wrapping (LoRA updates dropped, not merged)."""
        if isinstance(self.peft_config, LoraConfig):
            remove_lora(self.base_model, merge=False)
        elif isinstance(self.peft_config, AdapterConfig):
            for name, module in list(self.base_model.named_modules()):
                if isinstance(module, Adapted):
                    parent, _, child = name.rpartition(".")
                    self.base_model.get_submodule(parent).add_module(child, module.base_layer)
        return self.base_model

    def _lora_layers(self):
        layers = lora_layers(self.base_model)
        if not layers:
            raise RuntimeError("this model has no LoRA layers to merge (its method is not LoRA)")
        return layers

    # -- saving and loading ----------------------------------------------------------------
    def adapter_state_dict(self) -> dict[str, np.ndarray]:
        """The adapter's arrays under PEFT's names (float32 NumPy arrays)."""
        paths = hf_module_paths(self.base_model)
        weights = {}
        if isinstance(self.peft_config, LoraConfig):
            for name, layer in lora_layers(self.base_model).items():
                for part in ("lora_A", "lora_B"):
                    array = getattr(layer, part).weight.data
                    weights[f"base_model.model.{paths[name]}.{part}.weight"] = array
        elif isinstance(self.peft_config, PromptTuningConfig):
            weights["prompt_embeddings"] = self.prompt_embeddings.data
        else:
            for name, param in self.base_model.named_parameters():
                if param.requires_grad:
                    weights[f"base_model.model.{_hf_parameter(paths, name)}"] = param.data
        for module_name in self.modules_to_save:
            module = self.base_model.get_submodule(module_name)
            for name, param in module.named_parameters():
                weights[f"base_model.model.{paths[module_name]}.{name}"] = param.data
        return {
            key: np.ascontiguousarray(backend.to_device(value, "cpu"), dtype=np.float32)
            for key, value in weights.items()
        }

    def save_pretrained(self, directory) -> None:
        """Write ``adapter_config.json`` and ``adapter_model.safetensors`` (the adapter
        alone, not the base weights) into ``directory``, atomically."""
        from safetensors.numpy import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        weights = self.adapter_state_dict()
        write_atomically(
            directory / WEIGHTS_NAME,
            lambda temporary: save_file(weights, temporary, metadata={"format": "pt"}),
        )
        text = json.dumps(self._hf_config(), indent=2, sort_keys=True) + "\n"
        write_atomically(
            directory / CONFIG_NAME, lambda temporary: Path(temporary).write_text(text)
        )

    def _hf_config(self) -> dict:
        config = self.peft_config
        settings = {"peft_type": config.peft_type, "base_model_name_or_path": None}
        settings["inference_mode"] = True
        settings["modules_to_save"] = _hf_names(self.base_model, self.modules_to_save) or None
        if isinstance(config, LoraConfig):
            from lmcore.models.gpt import GPT

            targets = config.target_modules
            if isinstance(targets, str):  # a regex of lmcore paths: list the HF paths
                paths = hf_module_paths(self.base_model)
                targets = sorted(paths[name] for name in lora_layers(self.base_model))
            gpt_inside = any(isinstance(m, GPT) for m in self.base_model.modules())
            settings.update(
                r=config.r,
                lora_alpha=config.lora_alpha,
                lora_dropout=config.lora_dropout,
                target_modules=list(targets),
                use_rslora=config.use_rslora,
                bias=config.bias,
                fan_in_fan_out=gpt_inside,  # GPT-2's Conv1D layers store weights as (in, out)
                init_lora_weights=True,
                task_type=config.task_type or _task_type(self.base_model),
                **_UNSUPPORTED,
            )
        elif isinstance(config, PromptTuningConfig):
            settings.update(
                num_virtual_tokens=config.num_virtual_tokens,
                token_dim=self.prompt_embeddings.shape[1],
                num_transformer_submodules=1,
                prompt_tuning_init="RANDOM",
                task_type=_task_type(self.base_model),
            )
        else:
            settings.update({k: v for k, v in dataclasses.asdict(config).items()})
        return settings

    @classmethod
    def from_pretrained(cls, model: Module, directory, is_trainable: bool = False) -> PeftModel:
        """Wrap ``model`` with the adapter in ``directory`` (written by
        :meth:`save_pretrained` or by PEFT's ``save_pretrained``); as in PEFT the
        adapter is frozen unless ``is_trainable``.

        Example:
            >>> import tempfile
            >>> from lmcore.models import GPT, GPTConfig
            >>> from lmcore.peft import LoraConfig, get_peft_model
            >>> config = GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8)
            >>> tuned = get_peft_model(GPT(config), LoraConfig(r=2, target_modules=["c_fc"]))
            >>> with tempfile.TemporaryDirectory() as folder:
            ...     tuned.save_pretrained(folder)
            ...     again = PeftModel.from_pretrained(GPT(config), folder)
            >>> list(again.adapter_state_dict())
            ['base_model.model.transformer.h.0.mlp.c_fc.lora_A.weight', 'base_model.model.transformer.h.0.mlp.c_fc.lora_B.weight']
        """
        from safetensors.numpy import load_file

        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{directory} holds no {path.name}; an adapter directory has "
                    f"{CONFIG_NAME} and {WEIGHTS_NAME} (PEFT's save_pretrained writes them)."
                )
        settings = json.loads(config_path.read_text(encoding="utf-8"))
        weights = load_file(str(weights_path))
        kind = settings.get("peft_type")
        if kind == "LORA":
            peft_model = _load_lora(model, settings, weights, directory)
        elif kind == "PROMPT_TUNING":
            prompt = weights["prompt_embeddings"]
            config = PromptTuningConfig(num_virtual_tokens=prompt.shape[0])
            peft_model = PromptTuningModel(model, config)
            peft_model.prompt_embeddings.data[...] = backend.to_device(
                prompt, peft_model.prompt_embeddings.device
            )
            rest = {k: v for k, v in weights.items() if k != "prompt_embeddings"}
            _load_named(peft_model, rest, directory)
        elif kind in ("ADAPTER", "BITFIT"):
            fields = {k: settings[k] for k in settings if k not in ("peft_type",)}
            known = AdapterConfig if kind == "ADAPTER" else BitFitConfig
            names = {f.name for f in dataclasses.fields(known) if f.init}
            peft_model = get_peft_model(
                model, known(**{k: fields[k] for k in names if k in fields})
            )
            _load_named(peft_model, weights, directory)
        else:
            raise ValueError(
                f"{config_path} holds an adapter of type {kind!r}; lmcore loads LORA, "
                "PROMPT_TUNING, ADAPTER and BITFIT adapters."
            )
        if not is_trainable:
            peft_model.requires_grad_(False)
        return peft_model


def _task_type(model: Module) -> str:
    from lmcore.models.heads import SequenceClassifier, TokenClassifier

    if isinstance(model, SequenceClassifier):
        return "SEQ_CLS"
    if isinstance(model, TokenClassifier):
        return "TOKEN_CLS"
    return "CAUSAL_LM"


def hf_module_paths(model: Module) -> dict[str, str]:
    """lmcore module path -> the path of the same module in the equivalent
    ``transformers`` model: a GPT as ``GPT2LMHeadModel`` (``transformer.h.0.attn.c_attn``,
    ``lm_head``), a Llama as ``LlamaForCausalLM`` (``model.layers.0.self_attn.q_proj``,
    ``lm_head``), a BERT as ``BertForMaskedLM`` (``bert.encoder.layer.0...``), a GPT or
    BERT inside a task head under the head's name (``transformer.``, ``bert.``); other
    modules keep their paths. LoRA's wrappers (``base_layer``) are looked through.

    Example:
        >>> from lmcore.models import GPT, GPTConfig
        >>> paths = hf_module_paths(GPT(GPTConfig(11, 8, 1, 2, 8)))
        >>> paths["h.0.attn.c_attn"], paths["lm_head"]
        ('transformer.h.0.attn.c_attn', 'lm_head')
    """
    from lmcore.models.bert import BERT
    from lmcore.models.gpt import GPT
    from lmcore.models.llama import Llama

    kinds = (GPT, BERT, Llama)
    owners = [(name, type(m)) for name, m in model.named_modules() if isinstance(m, kinds)]
    paths = {}
    for name, _ in model.named_modules():
        if not name:
            continue
        owner = max(
            (o for o in owners if not o[0] or name.startswith(o[0] + ".")),
            key=lambda o: len(o[0]),
            default=None,
        )
        theirs = name
        if owner is not None:
            owner_name, kind = owner
            rest = name[len(owner_name) + 1 :] if owner_name else name
            if kind is BERT:
                rest = re.sub(r"^encoder\.(\d+)", r"encoder.layer.\1", rest)
                if owner_name:
                    theirs = f"{owner_name}.{rest}"
                elif rest.startswith("mlm_head"):
                    theirs = "cls.predictions" + rest.removeprefix("mlm_head")
                else:
                    theirs = f"bert.{rest}"
            elif not owner_name:
                prefix = "model" if kind is Llama else "transformer"
                theirs = rest if rest.startswith("lm_head") else f"{prefix}.{rest}"
        paths[name] = theirs.replace(".base_layer", "")
    return paths


def _hf_parameter(paths: dict[str, str], name: str) -> str:
    module, _, param = name.rpartition(".")
    return f"{paths[module]}.{param}" if module else param


def _hf_names(model: Module, names: list[str]) -> list[str]:
    paths = hf_module_paths(model)
    return [paths[name] for name in names]


def _load_lora(model: Module, settings: dict, weights: dict, directory: Path) -> PeftModel:
    for key, ours in _UNSUPPORTED.items():
        if settings.get(key, ours) not in (ours, None, {}):
            raise ValueError(
                f"{directory / CONFIG_NAME} sets {key}={settings[key]!r}; lmcore's LoRA "
                f"supports {key}={ours!r} only."
            )
    ours_of = {}
    for ours, theirs in hf_module_paths(model).items():
        ours_of.setdefault(theirs, ours)
    targets, unknown = [], []
    for key in weights:
        match = _LORA_KEY.fullmatch(key)
        if match is None:
            continue
        theirs = match.group(1)
        if theirs not in ours_of:
            unknown.append(theirs)
        elif ours_of[theirs] not in targets:
            targets.append(ours_of[theirs])
    if unknown or not targets:
        raise ValueError(
            f"the adapter in {directory} "
            + (
                f"names modules this {type(model).__name__} lacks: {', '.join(sorted(set(unknown)))}"
                if unknown
                else "holds no LoRA weights (keys ...lora_A.weight)"
            )
            + "; was it trained on another architecture?"
        )
    target_modules = settings.get("target_modules") or targets
    config = LoraConfig(
        r=int(settings["r"]),
        lora_alpha=settings.get("lora_alpha", 8),
        lora_dropout=settings.get("lora_dropout", 0.0),
        target_modules=target_modules,
        use_rslora=bool(settings.get("use_rslora", False)),
        bias=settings.get("bias", "none") if settings.get("bias") in ("none", "all") else "none",
        task_type=settings.get("task_type"),
    )
    peft_model = get_peft_model(model, config, _names=targets)
    paths = hf_module_paths(peft_model.base_model)
    for name, layer in lora_layers(peft_model.base_model).items():
        for part in ("lora_A", "lora_B"):
            key = f"base_model.model.{paths[name]}.{part}.weight"
            target = getattr(layer, part).weight
            if key not in weights:
                raise KeyError(f"the adapter in {directory} lacks {key}")
            if tuple(weights[key].shape) != target.shape:
                raise ValueError(
                    f"{key} in {directory} has shape {weights[key].shape}, the model's LoRA "
                    f"layer {target.shape} (rank r={config.r} from {CONFIG_NAME})"
                )
            target.data[...] = backend.to_device(weights[key], target.device)
    _load_named(peft_model, weights, directory, skip=_LORA_KEY)
    return peft_model


def _load_named(peft_model: PeftModel, weights: dict, directory: Path, skip=None) -> None:
    """Copy the non-LoRA arrays of an adapter file (heads, biases, adapters) in place."""
    paths = hf_module_paths(peft_model.base_model)
    by_key = {
        f"base_model.model.{_hf_parameter(paths, name)}": param
        for name, param in peft_model.base_model.named_parameters()
    }
    for key, array in weights.items():
        if skip is not None and skip.fullmatch(key):
            continue
        if key not in by_key:
            raise KeyError(f"the adapter in {directory} holds {key}, which this model lacks")
        target = by_key[key]
        target.data[...] = backend.to_device(array, target.device).astype(target.dtype)


class PromptTuningModel(PeftModel):
    """A GPT with ``num_virtual_tokens`` learned embeddings (P, C) before every input:
    ids (B, T) -> logits (B, T, V) for the real positions (and the loss with
    ``targets``). Only the prompt trains.

    The model may also be a :class:`~lmcore.models.heads.SequenceClassifier` or
    :class:`~lmcore.models.heads.TokenClassifier` on a GPT: the prompt then goes before
    the backbone's input, the head reads the real positions only, and the head trains
    with the prompt (a new task needs it), as PEFT's ``modules_to_save``.

    Example:
        >>> from lmcore.models import GPT, GPTConfig
        >>> gpt = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=1, n_head=2, n_embd=8))
        >>> model = PromptTuningModel(gpt, PromptTuningConfig(num_virtual_tokens=4))
        >>> model(np.zeros((2, 5), np.int64)).shape, model.num_parameters(only_trainable=True)
        ((2, 5, 20), 32)
        >>> from lmcore.models.heads import SequenceClassifier
        >>> head = SequenceClassifier(GPT(gpt.config), num_labels=3)
        >>> tuned = PromptTuningModel(head, PromptTuningConfig(num_virtual_tokens=4))
        >>> tuned(np.zeros((2, 5), np.int64)).shape, tuned.num_parameters(only_trainable=True)
        ((2, 3), 56)
    """

    def __init__(self, model: Module, config: PromptTuningConfig):
        from lmcore.models.gpt import GPT
        from lmcore.models.heads import SequenceClassifier, TokenClassifier

        is_head = isinstance(model, (SequenceClassifier, TokenClassifier))
        gpt = model.backbone if is_head else model
        if not isinstance(gpt, GPT):
            raise TypeError(
                f"prompt tuning here works on a lmcore GPT (or a task head on one), got "
                f"{type(gpt).__name__}; use LoRA or adapters for other models."
            )
        if config.num_virtual_tokens < 1:
            raise ValueError(
                f"num_virtual_tokens must be positive, got {config.num_virtual_tokens}"
            )
        heads = _head_names(model) if is_head else []
        super().__init__(model, config, modules_to_save=heads)
        model.requires_grad_(False)
        for name in heads:
            model.get_submodule(name).requires_grad_(True)
        table = gpt.wte.weight.data
        if config.init_token_ids is not None:
            ids = np.asarray(config.init_token_ids)
            if len(ids) != config.num_virtual_tokens:
                raise ValueError(
                    f"init_token_ids has {len(ids)} ids for {config.num_virtual_tokens} "
                    "virtual tokens; give one id per virtual token."
                )
        else:
            generator = np.random.default_rng(config.seed)
            ids = generator.integers(0, table.shape[0], config.num_virtual_tokens)
        xp = backend.get_array_module(table)
        self.prompt_embeddings = Parameter(table[xp.asarray(ids)].copy())  # (P, C)

    def forward(self, idx, targets=None, padding_mask=None, attention_mask=None):
        from lmcore.models.gpt import GPT
        from lmcore.models.heads import SequenceClassifier, gpt_hidden_states, pool

        model, count = self.base_model, self.peft_config.num_virtual_tokens
        if isinstance(model, GPT):
            hidden = gpt_hidden_states(model, idx, padding_mask, prefix=self.prompt_embeddings)
            logits = model.lm_head(hidden[:, count:])  # (B, T, V): the real positions
            if targets is None:
                return logits
            return logits, F.cross_entropy(logits, targets)
        given = attention_mask if attention_mask is not None else padding_mask
        mask = model.padding_mask(idx, given)
        hidden = gpt_hidden_states(model.backbone, idx, mask, prefix=self.prompt_embeddings)
        hidden = hidden[:, count:]  # (B, T, C): the real positions
        if isinstance(model, SequenceClassifier):
            logits = model.head(model.dropout(pool(hidden, mask, model.pooling)))  # (B, K)
        else:
            logits = model.classifier(model.dropout(hidden))  # (B, T, K)
        if targets is None:
            return logits

        labels = targets.data if isinstance(targets, Tensor) else targets
        labels = backend.get_array_module(logits.data).asarray(labels)
        return logits, F.cross_entropy(logits, labels, ignore_index=-100)

    # -- generation: the soft prompt before every prompt ------------------------------------
    def generate(
        self,
        idx,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
        **options,
    ):
        """The base GPT's :meth:`~lmcore.models.gpt.GPT.generate`, with the soft prompt read
        before ``idx`` (B, T) at every step; returns the ids (B, T + new), the soft
        prompt not among them (it has no ids). The options are those of
        :func:`lmcore.generate.generate`; the key-value cache holds the soft prompt's
        keys and values with the rest.

        Example:
            >>> from lmcore.models import GPT, GPTConfig
            >>> gpt = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=1, n_head=2, n_embd=8))
            >>> model = PromptTuningModel(gpt, PromptTuningConfig(num_virtual_tokens=4))
            >>> model.generate(np.array([[1, 2, 3]]), 5, temperature=0).shape
            (1, 8)
        """
        from lmcore.generate import generate

        self._language_model()
        return generate(self, idx, max_new_tokens, temperature, top_k, seed, **options)

    def next_token_logits(self, idx, state=None):
        """Logits (B, V) of the token after ``idx`` (B, T) read behind the soft prompt,
        and the key-value cache to pass back as ``state`` (see :mod:`lmcore.generate`).
        The first call (or one whose token would overrun the block) reads the soft
        prompt and the last ``block_size - P`` tokens at once; later calls read only the
        newest token."""
        gpt = self._language_model()
        count = self.peft_config.num_virtual_tokens
        room = gpt.config.block_size - count  # real tokens the context holds
        cache = gpt.new_cache(idx.shape[0]) if state is None else state
        if 0 < cache.get_seq_length() < gpt.config.block_size:
            return gpt(idx[:, -1:], past_key_values=cache).data[:, -1, :], cache
        cache.reset()
        tokens = gpt._checked_ids(idx[:, -room:])  # (B, T')
        xp = backend.get_array_module(tokens)
        batch, length = tokens.shape
        zeros = Tensor(xp.zeros((batch, 1, 1), dtype=gpt.wte.weight.dtype))
        x = F.cat([self.prompt_embeddings[None] + zeros, gpt.wte(tokens)], dim=1)  # (B, P+T', C)
        if gpt.wpe is not None:
            x = x + gpt.wpe(xp.arange(count + length))
        x = gpt.drop(x)
        for block in gpt.h:
            x = block(x, None, cache)
        return gpt.lm_head(gpt.ln_f(x)).data[:, -1, :], cache

    def _language_model(self):
        """The base GPT, or a clear error for a classifier (which does not generate)."""
        from lmcore.models.gpt import GPT

        if not isinstance(self.base_model, GPT):
            raise TypeError(
                f"generate needs a prompt-tuned GPT language model; this one wraps a "
                f"{type(self.base_model).__name__}, which classifies and does not generate"
            )
        return self.base_model


def get_peft_model(model: Module, peft_config, _names: list[str] | None = None) -> PeftModel:
    """Wrap ``model`` for the method of ``peft_config`` (:class:`~lmcore.peft.lora.LoraConfig`,
    :class:`~lmcore.peft.adapters.AdapterConfig`, :class:`~lmcore.peft.adapters.PromptTuningConfig`,
    :class:`~lmcore.peft.adapters.BitFitConfig`): the base parameters are frozen, the new ones
    train, and a task head (``score``/``classifier`` of :mod:`lmcore.models.heads`) trains
    too. The model's weights are shared, not copied: it is changed in place.

    Example:
        >>> from lmcore.models import GPT, GPTConfig
        >>> from lmcore.peft import BitFitConfig
        >>> gpt = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8))
        >>> bitfit = get_peft_model(gpt, BitFitConfig())
        >>> sorted({name.rsplit(".", 1)[-1] for name, p in bitfit.named_parameters() if p.requires_grad})
        ['bias']
    """
    if isinstance(model, PeftModel):
        raise ValueError("the model is wrapped already; call unload() first or wrap the base")
    if isinstance(peft_config, PromptTuningConfig):
        return PromptTuningModel(model, peft_config)
    heads = _head_names(model)
    model.requires_grad_(False)
    if isinstance(peft_config, LoraConfig):
        inject_lora(model, peft_config, _names)
        if peft_config.bias == "all":
            _unfreeze_biases(model)
    elif isinstance(peft_config, AdapterConfig):
        targets = peft_config.target_modules or default_adapter_targets(model)
        for name in find_target_modules(model, targets):
            module = model.get_submodule(name)
            width = _output_width(module, name)
            parent, _, child = name.rpartition(".")
            model.get_submodule(parent).add_module(
                child, Adapted(module, width, peft_config.bottleneck)
            )
        if peft_config.train_layer_norms:
            for module in model.modules():
                if isinstance(module, LayerNorm):
                    module.requires_grad_(True)
    elif isinstance(peft_config, BitFitConfig):
        _unfreeze_biases(model)
        if not peft_config.train_head:
            heads = []
    else:
        raise TypeError(
            f"get_peft_model takes a LoraConfig, AdapterConfig, PromptTuningConfig or "
            f"BitFitConfig, got {type(peft_config).__name__}"
        )
    for name in heads:
        model.get_submodule(name).requires_grad_(True)
    return PeftModel(model, peft_config, modules_to_save=heads)


def _unfreeze_biases(model: Module) -> None:
    for name, param in model.named_parameters():
        if name.rsplit(".", 1)[-1] == "bias":
            param.requires_grad = True


def _output_width(module: Module, name: str) -> int:
    """The width of what ``module`` outputs: its last Linear's ``out_features``."""
    from lmcore.nn.layers import Linear

    linears = [m for m in module.modules() if isinstance(m, Linear)]
    if not linears:
        raise TypeError(f"cannot tell the output width of {name} ({type(module).__name__})")
    return linears[-1].out_features
