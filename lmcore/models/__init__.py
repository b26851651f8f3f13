"""Language models built from ``lmcore.nn``.

Example:
    >>> from lmcore.models import MLPLanguageModel
    >>> model = MLPLanguageModel(vocab_size=65, context=8, embed_dim=16, hidden=128)
"""

from lmcore.models.bert import BERT, BERTConfig
from lmcore.models.gpt import GPT, GPTConfig
from lmcore.models.heads import SequenceClassifier, TokenClassifier
from lmcore.models.llama import Llama, LlamaConfig
from lmcore.models.mlp import MLPLanguageModel
from lmcore.models.rnn import RNNLanguageModel, detach_state

__all__ = [
    "BERT",
    "BERTConfig",
    "GPT",
    "GPTConfig",
    "Llama",
    "LlamaConfig",
    "MLPLanguageModel",
    "RNNLanguageModel",
    "SequenceClassifier",
    "TokenClassifier",
    "detach_state",
]
