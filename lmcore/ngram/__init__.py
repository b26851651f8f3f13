"""Count-based language models: n-gram counts, smoothing, perplexity and sampling.

- :mod:`lmcore.ngram.counts` counts n-grams as sorted integer keys (vectorised);
- :mod:`lmcore.ngram.smoothing` turns counts into probabilities (MLE, add-k,
  Jelinek-Mercer interpolation with EM-fitted weights, Kneser-Ney);
- :mod:`lmcore.ngram.model` holds :class:`NGramLM`, the model a reader uses.

Example:
    >>> from lmcore.ngram import NGramLM
    >>> ids = [0, 1, 2, 0, 1, 0, 1, 2]
    >>> model = NGramLM(3, smoothing="kneser_ney").fit(ids)
    >>> round(model.perplexity([0, 1, 2]), 3) > 1
    True
"""

from lmcore.ngram.counts import NGramCounts
from lmcore.ngram.model import SMOOTHINGS, NGramLM

__all__ = ["SMOOTHINGS", "NGramCounts", "NGramLM"]
