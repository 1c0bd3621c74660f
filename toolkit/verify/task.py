"""The embedded toy sentiment task and the shipped default model.

Vocabulary: ``<pad>``, ``<unk>``, then positive, negative and neutral word lists (a few
hundred words in all).  A sentence (length 6 to 12) is drawn deterministically from a seed:
mostly neutral filler with 1 to 4 sentiment words; its label is 1 (positive) when it holds
more positive than negative words, 0 when fewer (ties are redrawn).

:func:`load_default_model` loads ``data/default_model.pt`` (made by
``data/make_default_model.py``; never retrained at import): a 1-layer
:class:`~toolkit.verify.model.TransformerClassifier` (dim 64, 4 heads, FFN 128,
``no_var`` LayerNorm, ReLU).

>>> model, vocab = load_default_model()
>>> ids = vocab.encode(EXAMPLES[0][0])
>>> int(model(model.embed(ids[None])).argmax()) == EXAMPLES[0][1]
True
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from .._checks import check_int, check_seed
from .interface import as_int_tensor
from .model import TransformerClassifier

__all__ = [
    "EXAMPLES",
    "NEGATIVE",
    "NEUTRAL",
    "POSITIVE",
    "Vocab",
    "encode",
    "load_default_model",
    "make_dataset",
]

POSITIVE = """good great excellent wonderful amazing superb brilliant delightful lovely
charming enjoyable fantastic fine pleasant beautiful moving touching funny clever witty
fresh gripping stunning masterful memorable powerful heartfelt inspiring engaging
entertaining rewarding solid strong smart warm joyful thrilling riveting elegant graceful
impressive remarkable splendid terrific marvelous perfect best favorite outstanding
compelling sincere uplifting vivid rich sharp tender admirable satisfying""".split()
NEGATIVE = """bad awful terrible horrible boring dull poor weak bland tedious lame stupid
silly ugly messy clumsy sloppy tiresome annoying painful dreadful pathetic worthless
mediocre forgettable predictable shallow hollow flat lifeless slow confusing pointless
cheap trite stale tired wooden awkward disappointing irritating unbearable mess
disaster failure waste worst unfunny overlong overrated plodding bloated incoherent
grating pretentious tacky hackneyed insipid dismal""".split()
NEUTRAL = """the a an this that film movie story plot actor actress director scene scenes
music score script cast camera screen character characters ending beginning middle
picture show drama comedy thriller documentary feature sequel remake studio audience
critic time year night day hour minute people man woman child family friend city town
house road car war love life world history book novel play stage role part lead voice
sound light color editing pace tone style genre version production budget release
festival theater and but or so with without about from into over under after before
during while as of in on at by for to is was are were be been being has have had it
its he she they we you i his her their our my your one two three some many few most
more less very quite rather really just also still even almost never always often
again then now here there what who which when where how because although though if
yet both each other another such only own same than too well back long short first
last new old young big small high low whole full half kind sort way thing things
something nothing everything anything moment moments idea ideas effect effects shot
shots line lines dialogue word words end start turn point place case fact reason""".split()

_SPECIALS = ["<pad>", "<unk>"]
WORDS = _SPECIALS + POSITIVE + NEGATIVE + NEUTRAL

#: a few example sentences (sentence, label)
EXAMPLES = [
    ("a truly wonderful and moving film", 1),
    ("the plot was dull and the acting was wooden", 0),
    ("this movie has a brilliant cast and a great score", 1),
    ("the story is predictable and the ending is a mess", 0),
    ("some scenes are slow but the film is charming and very funny", 1),
    ("a beautiful idea with a tedious script and awful dialogue", 0),
]


class Vocab:
    """Word <-> id mapping; ``encode`` lower-cases, strips punctuation, maps unknowns to 1.

    Parameters
    ----------
    words : iterable of str
        The words, in id order.

    Examples
    --------
    >>> v = Vocab(["<pad>", "<unk>", "good", "film"])
    >>> v.encode("Good film!").tolist(), v.decode([3, 2])
    ([2, 3], 'film good')
    """

    def __init__(self, words: Iterable[str]) -> None:
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}
        self.positive = [self.index[w] for w in POSITIVE if w in self.index]
        self.negative = [self.index[w] for w in NEGATIVE if w in self.index]

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, sentence: str) -> Tensor:
        """Token ids [T] (long) of ``sentence``."""
        if not isinstance(sentence, str):
            raise TypeError(f"sentence must be a str, got {type(sentence).__name__}")
        toks = re.findall(r"[a-z0-9']+", sentence.lower())
        if not toks:
            raise ValueError(f"sentence must contain at least one word, got {sentence!r}")
        return torch.tensor([self.index.get(t, 1) for t in toks], dtype=torch.long)

    def decode(self, ids: Tensor | Sequence[int]) -> str:
        """The words of ``ids`` (integers in ``[0, len(self))``), joined by spaces."""
        t = as_int_tensor("ids", ids).reshape(-1)
        n = len(self.words)
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n):
            raise ValueError(
                f"ids must lie in [0, {n}), got range [{int(t.min())}, {int(t.max())}]"
            )
        return " ".join(self.words[int(i)] for i in t)


VOCAB = Vocab(WORDS)


def make_dataset(
    n: int, seed: int = 0, min_len: int = 6, max_len: int = 12
) -> tuple[Tensor, Tensor, Tensor]:
    """``n`` sentences of the toy sentiment task, drawn deterministically from ``seed``.

    Parameters
    ----------
    n : int
        Number of sentences.
    seed : int
        Seeds the generator.
    min_len, max_len : int
        Sentence lengths are uniform in ``[min_len, max_len]`` (``4 <= min_len <= max_len``:
        a sentence holds up to four sentiment words, and its label counts all of them).

    Returns
    -------
    (ids, lengths, labels)
        ids [n, max_len] (long, padded with 0), lengths [n], labels [n] (1 = positive).

    Examples
    --------
    >>> ids, lens, labels = make_dataset(3, seed=1)
    >>> ids.shape, bool((lens >= 6).all()), set(labels.tolist()) <= {0, 1}
    (torch.Size([3, 12]), True, True)
    """
    check_int("n", n)
    check_int("min_len", min_len, 4)
    check_int("max_len", max_len, min_len)
    g = torch.Generator().manual_seed(check_seed(seed))
    pos = torch.tensor(VOCAB.positive)
    neg = torch.tensor(VOCAB.negative)
    neu = torch.tensor([VOCAB.index[w] for w in NEUTRAL])
    ids = torch.zeros(n, max_len, dtype=torch.long)
    lens = torch.randint(min_len, max_len + 1, (n,), generator=g)
    labels = torch.zeros(n, dtype=torch.long)
    for i in range(n):
        L = int(lens[i])
        while True:
            k = int(torch.randint(1, 5, (1,), generator=g))
            npos = int(torch.randint(0, k + 1, (1,), generator=g))
            if 2 * npos != k:
                break
        words = neu[torch.randint(len(neu), (L,), generator=g)]
        slots = torch.randperm(L, generator=g)[:k]
        words[slots[:npos]] = pos[torch.randint(len(pos), (npos,), generator=g)]
        words[slots[npos:]] = neg[torch.randint(len(neg), (k - npos,), generator=g)]
        ids[i, :L] = words
        labels[i] = int(npos > k - npos)
    return ids, lens, labels


DEFAULT_PATH = Path(__file__).parent / "data" / "default_model.pt"


@functools.lru_cache(maxsize=1)
def _load(path: str) -> tuple[TransformerClassifier, Vocab]:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = TransformerClassifier(**blob["config"])
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model, Vocab(blob["vocab"])


def load_default_model() -> tuple[TransformerClassifier, Vocab]:
    """``(model, vocab)``: the shipped model (a fresh copy each call) and its :class:`Vocab`.

    Returns
    -------
    (TransformerClassifier, Vocab)
        The one-layer model of ``data/default_model.pt`` in eval mode, and its vocabulary.

    Examples
    --------
    >>> model, vocab = load_default_model()
    >>> model.num_classes, len(model.blocks), len(vocab) == model.embedding.num_embeddings
    (2, 1, True)
    """
    model, vocab = _load(str(DEFAULT_PATH))
    return copy.deepcopy(model), vocab


def encode(sentence: str) -> Tensor:
    """Token ids [T] of ``sentence`` in the default vocabulary.

    Examples
    --------
    >>> encode("a good film").shape
    torch.Size([3])
    """
    return VOCAB.encode(sentence)
