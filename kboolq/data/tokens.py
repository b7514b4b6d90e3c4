"""Text to tokens, the notebook's way (lower-case, ASCII, nltk words, no punctuation tokens)."""

from __future__ import annotations

import string
import unicodedata

from nltk.stem.snowball import SnowballStemmer
from nltk.tokenize import word_tokenize

TOKENIZER_VERSION = 1  # bump whenever tokenize() changes: it is part of the cache fingerprint
_PUNCTUATION = frozenset(string.punctuation)
ACCENTS = ("drop", "fold")  # what happens to accented letters: the notebook dropped them
DEFAULT_ACCENTS = "fold"  # the library's default and the commands' (--accents)
_STEMMER = SnowballStemmer("english")  # rules only: nothing to download, unlike a lemmatizer


def tokenize(text: str, accents: str = DEFAULT_ACCENTS) -> list[str]:
    """The seed's tokenization: lower-case, ASCII only, nltk words, punctuation tokens dropped.

    With accents="fold" letters lose their accents first (NFKD, combining marks removed:
    "pokémon" -> "pokemon", a GloVe word); "drop" is the notebook's way, which deletes every
    non-ASCII letter ("pokmon", out of vocabulary).

    nltk with preserve_line=True needs no downloaded model but leaves a sentence's final period
    on its last word ('iran.'); a trailing period is split off unless the word has another one
    inside ('u.s.', 'e.g.'), so sentence ends never make a known word out-of-vocabulary.
    """
    if accents == "fold":
        text = "".join(
            c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)
        )
    ascii_text = text.lower().encode("ascii", "ignore").decode("ascii")
    tokens = []
    for token in word_tokenize(ascii_text, preserve_line=True):
        if len(token) > 1 and token.endswith(".") and "." not in token[:-1]:
            token = token[:-1]
        if not _PUNCTUATION.issuperset(token):
            tokens.append(token)
    return tokens


def stem(token: str) -> str:
    """The word's Snowball (Porter 2) stem: "runs" and "running" share "run", "countries" and
    "country" share "countri". WordNet lemmas would need a corpus download; stems need none."""
    return _STEMMER.stem(token)
