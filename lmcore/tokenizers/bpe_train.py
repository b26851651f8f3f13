"""Training byte-level BPE: choose merges from the pair counts of a corpus.

Both trainers work on *words*: the unique pre-tokenized chunks of the corpus, as
tuples of byte values (ids 0-255), each with its number of occurrences. Merge
``k`` replaces the pair it names by the new id ``256 + k`` in every word.

Which pair is merged next: the one with the **highest count** (summed over word
occurrences); among equal counts the **lowest pair** ``(a, b)`` in lexicographic
order of ids. Both trainers follow this rule, so they return identical merges.

- :func:`train_naive` recounts every pair of every word after each merge. It is
  short and obviously right, and slow: each merge costs a pass over the corpus.
- :func:`train_incremental` keeps the pair counts up to date instead. An index
  maps each pair to the words that contain it; a merge rewrites only those words
  and changes only the counts of the pairs around the merged one. A heap gives
  the best pair; heap entries whose count has changed since they were pushed are
  skipped when popped ("lazy invalidation").

Example:
    >>> words = count_words("low lower lowest")
    >>> train_naive(words, 2) == train_incremental(words, 2)
    True
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict

from tqdm.auto import tqdm

from lmcore.tokenizers.pretokenize import GPT2_PATTERN, special_splitter, split

Pair = tuple[int, int]


def count_words(text: str, pattern: str = GPT2_PATTERN, special_tokens=()) -> dict[tuple, int]:
    """Unique chunks of ``text`` as byte tuples, with their counts.

    Special tokens are cut out of the text first and not counted, so no merge
    learns their spelling. Returns ``{(b0, b1, ...): count}`` in first-seen order.
    """
    pieces = special_splitter(special_tokens).split(text)[::2] if special_tokens else [text]
    chunks = Counter()
    for piece in pieces:
        chunks.update(split(piece, pattern))
    return {tuple(chunk.encode("utf-8")): n for chunk, n in chunks.items()}


def merge_pair(ids: list[int], pair: Pair, new_id: int) -> list[int]:
    """``ids`` with each occurrence of ``pair`` replaced by ``new_id``, left to right.

    Example:
        >>> merge_pair([1, 1, 1, 2], (1, 1), 9)
        [9, 1, 2]
    """
    a, b = pair
    out, i, n = [], 0, len(ids)
    while i < n:
        if ids[i] == a and i + 1 < n and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def merge_and_diff(ids: list[int], pair: Pair, new_id: int):
    """:func:`merge_pair`, plus the adjacent pairs the merge removes and adds.

    Only pairs next to a merged position change; each is listed once per
    occurrence, so the pair counts of a word change by ``added - removed``.

    Example:
        >>> merge_and_diff([5, 1, 2, 1, 2], (1, 2), 9)
        ([5, 9, 9], [(1, 2), (5, 1), (2, 1), (1, 2)], [(5, 9), (9, 9)])
    """
    a, b = pair
    out, removed, added = [], [], []
    i, n, last = 0, len(ids), -1  # last: where the previous merged occurrence ended
    while i < n:
        t = ids[i]
        if t == a and i + 1 < n and ids[i + 1] == b:
            removed.append(pair)
            if i > 0 and last != i - 1:
                removed.append((ids[i - 1], a))
            if i + 2 < n:
                removed.append((b, ids[i + 2]))
            if out:
                added.append((out[-1], new_id))
            out.append(new_id)
            last = i + 1
            i += 2
        else:
            if out and out[-1] == new_id:
                added.append((new_id, t))
            out.append(t)
            i += 1
    return out, removed, added


def pair_counts(words: dict[tuple, int]) -> Counter:
    """Occurrences of each adjacent pair, over all words weighted by their counts."""
    counts = Counter()
    for word, n in words.items():
        for pair in zip(word, word[1:]):
            counts[pair] += n
    return counts


def train_naive(words: dict[tuple, int], num_merges: int) -> list[Pair]:
    """Merges chosen by recounting all pairs after every merge (reference trainer).

    Args:
        words: ``{byte tuple: count}``, as from :func:`count_words`.
        num_merges: how many merges to learn; fewer come back if no pair is left.
    Returns:
        list of pairs; the k-th one makes id ``256 + k``.
    """
    merges = []
    for k in range(num_merges):
        counts = pair_counts(words)
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        words = {tuple(merge_pair(list(w), best, 256 + k)): n for w, n in words.items()}
        merges.append(best)
    return merges


def train_incremental(
    words: dict[tuple, int], num_merges: int, progress: bool = False
) -> list[Pair]:
    """The same merges as :func:`train_naive`, with counts updated incrementally.

    ``progress=True`` shows a progress bar over the merges.
    """
    seqs = [list(w) for w in words]
    freqs = list(words.values())
    counts: dict[Pair, int] = defaultdict(int)
    where: dict[Pair, set[int]] = defaultdict(set)  # pair -> indices of words holding it
    for w, (seq, n) in enumerate(zip(seqs, freqs)):
        for pair in zip(seq, seq[1:]):
            counts[pair] += n
            where[pair].add(w)
    heap = [(-n, a, b) for (a, b), n in counts.items()]
    heapq.heapify(heap)

    merges: list[Pair] = []
    with tqdm(total=num_merges, desc="BPE merges", disable=not progress) as bar:
        while heap and len(merges) < num_merges:
            neg, a, b = heapq.heappop(heap)
            pair = (a, b)
            if counts.get(pair, 0) != -neg:
                continue  # stale entry: the count changed after it was pushed
            new_id = 256 + len(merges)
            merges.append(pair)
            delta: dict[Pair, int] = defaultdict(int)
            for w in where.pop(pair):
                merged, removed, added = merge_and_diff(seqs[w], pair, new_id)
                n = freqs[w]
                for p in removed:  # empty when the word lost the pair to an earlier merge
                    delta[p] -= n
                for p in added:
                    delta[p] += n
                    where[p].add(w)
                seqs[w] = merged
            for p, d in delta.items():
                if d:
                    counts[p] += d
                    if counts[p]:
                        heapq.heappush(heap, (-counts[p], *p))
                    else:
                        del counts[p]
            bar.update(1)
    return merges
