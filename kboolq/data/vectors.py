"""Which source reads a --glove spec: the one registry of vector sources, and joined vectors.

    kumo50 | hub:DIM | spacy-md | spacy:PATH | PATH (GloVe .txt/.zip, fastText .vec) | A+B

`A+B` (any number of parts) joins sources side by side (JOIN_RULE).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kboolq.data.glove import Glove, GloveFile, HubGlove, Kumo50, VectorSource, convert
from kboolq.data.spacy_vectors import SpacyVectors
from kboolq.errors import UserError
from kboolq.files import sha256_json

# A joined vocabulary is every word some part has, in the first part's order, then each later
# part's new words in its order; a word's vector is its vectors from every part side by side,
# with zeros for a part that lacks the word.
JOIN_RULE = 1  # part of the fingerprint


class Joined(VectorSource):
    """A+B: the parts' vectors side by side, converted once into the cache."""

    def __init__(self, spec: str, cache_dir: Path) -> None:
        super().__init__(spec, cache_dir)
        self.parts = [vector_source(part, cache_dir) for part in spec.split("+")]

    @staticmethod
    def claims(spec: str) -> bool:
        return "+" in spec and not Path(spec).expanduser().exists()

    def problem(self) -> str | None:
        if any(not part.spec for part in self.parts) or len(self.parts) < 2:
            return f"--glove {self.spec}: expected SOURCE+SOURCE (e.g. kumo50+spacy-md)"
        specs = [part.spec for part in self.parts]
        if len(set(specs)) != len(specs):
            return f"--glove {self.spec}: names a source twice"
        return next((p for part in self.parts if (p := part.problem()) is not None), None)

    def load(self) -> Glove:
        if (problem := self.problem()) is not None:
            raise UserError(problem)
        loaded = [part.load() for part in self.parts]
        fingerprint = sha256_json(["joined", JOIN_RULE, *(glove.fingerprint for glove in loaded)])
        directory = Path(self.cache_dir) / "glove" / f"joined-{fingerprint[:24]}"
        return convert(lambda: join(loaded), directory, self.spec, fingerprint)


def join(parts: list[Glove]) -> tuple[list[str], np.ndarray]:
    """The words and vectors of `parts` joined (JOIN_RULE)."""
    words: list[str] = []
    index: dict[str, int] = {}
    for glove in parts:
        for word in glove.words:
            if word not in index:
                index[word] = len(words)
                words.append(word)
    vectors = np.zeros((len(words), sum(glove.dim for glove in parts)), dtype=np.float32)
    start = 0
    for glove in parts:
        rows = np.fromiter((index[word] for word in glove.words), np.int64, len(glove.words))
        vectors[rows, start : start + glove.dim] = glove.vectors
        start += glove.dim
    return words, vectors


# The one registry of --glove sources: the first class that claims a spec reads it.
VECTOR_SOURCES: tuple[type[VectorSource], ...] = (Joined, Kumo50, HubGlove, SpacyVectors, GloveFile)


def vector_source(spec: str, cache_dir: Path) -> VectorSource:
    source = next(kind for kind in VECTOR_SOURCES if kind.claims(spec))
    return source(spec, cache_dir)


def source_problem(spec: str, cache_dir: Path) -> str | None:
    """What stops `spec` from loading, found without loading it (None: nothing found)."""
    return vector_source(spec, cache_dir).problem()


def load_glove(spec: str, cache_dir: Path) -> Glove:
    """`spec` as the module docstring lists."""
    return vector_source(spec, cache_dir).load()
