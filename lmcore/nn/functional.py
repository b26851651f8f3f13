"""``torch.nn.functional``'s place in lmcore: the namespace of :mod:`lmcore.functional`
(the same objects, :func:`~lmcore.functional.fused_attention.scaled_dot_product_attention`
included), so ``import lmcore.nn.functional as F`` works as it does with PyTorch.

One difference to know: :func:`cross_entropy` takes the classes on the LAST axis,
(B, T, C) logits with (B, T) targets, where PyTorch wants (B, C, T); for (N, C) the two
agree. :class:`lmcore.nn.CrossEntropyLoss` accepts both layouts.

Example:
    >>> import numpy as np
    >>> import lmcore.nn.functional as F
    >>> from lmcore.autograd import Tensor
    >>> F.relu(Tensor(np.array([-1.0, 2.0]))).numpy()
    array([0., 2.])
    >>> round(F.mse_loss(Tensor([1.0, 3.0]), Tensor([1.0, 1.0])).item(), 4)
    2.0
"""

from lmcore.functional import *  # noqa: F403
from lmcore.functional import __all__ as __all__
