"""The stand-alone tokenizer an export ships (tokenizer.py): kboolq's text -> ids on Python's
standard library alone, so that a user with only onnxruntime and numpy encodes text exactly as
kboolq does, and checks it on the export's check.jsonl.

kboolq tokenizes with nltk's word_tokenize (preserve_line=True), whose rules are regular
expressions. The file is written from the rules of the nltk that kboolq itself runs (read from
its NLTKWordTokenizer, not copied by hand), so the two cannot drift apart; the tests compare
the written tokenizer with kboolq.data.tokens.tokenize on real text. The input is ASCII by then
(kboolq keeps ASCII characters only), where nltk's regex engine and Python's re agree.
"""

from __future__ import annotations

import re
import string

import nltk
from nltk.tokenize.destructive import NLTKWordTokenizer

from kboolq.data.layout import CHARACTERS
from kboolq.data.tokens import TOKENIZER_VERSION

FILE = "tokenizer.py"
CHECK_FILE = "check.jsonl"
KNOWN_FILE = "known.txt"  # an ensemble over different vectors: which members know each word
_FLAGS = re.IGNORECASE | re.MULTILINE | re.DOTALL | re.VERBOSE  # what re shares with regex


def _rule(pattern, substitution: str | None = None) -> str:
    flags = pattern.flags & _FLAGS
    compiled = f"re.compile({pattern.pattern!r}, {flags})"
    return compiled if substitution is None else f"({compiled}, {substitution!r})"


def _rules(name: str, pairs) -> str:
    return f"{name} = [\n" + "".join(f"    {_rule(*pair)},\n" for pair in pairs) + "]\n"


def source(accents: str, word_chars: int) -> str:
    """tokenizer.py for a run with these settings."""
    rules = NLTKWordTokenizer
    tables = "".join(
        [
            _rules("STARTING_QUOTES", rules.STARTING_QUOTES),
            _rules("PUNCTUATION_RULES", rules.PUNCTUATION),
            f"PARENS_BRACKETS = {_rule(*rules.PARENS_BRACKETS)}\n",
            f"DOUBLE_DASHES = {_rule(*rules.DOUBLE_DASHES)}\n",
            _rules("ENDING_QUOTES", rules.ENDING_QUOTES),
            _rules("CONTRACTIONS", [(p,) for p in [*rules.CONTRACTIONS2, *rules.CONTRACTIONS3]]),
        ]
    )
    return TEMPLATE.format(
        nltk=nltk.__version__,
        version=TOKENIZER_VERSION,
        accents=accents,
        word_chars=word_chars,
        characters=CHARACTERS,
        punctuation=string.punctuation,
        tables=tables,
        known_file=KNOWN_FILE,
    )


TEMPLATE = '''"""kboolq's tokenizer and encoder for model.onnx, on Python 3.11+'s standard library.

    python tokenizer.py        # checks this folder's model.onnx on check.jsonl (needs numpy
                               # and onnxruntime): kboolq's own answers for those rows

tokenize(text) gives kboolq's tokens (tokenizer version {version}), encode(rows, vocabulary)
the model's inputs, as lists: "question" and "passage" ids (line n of vocab.txt is id n + 1;
0 pads), "lengths" ([question ids, passage ids] per row) and, for a model that reads
characters, "question_chars" and "passage_chars". manifest.json says the same in words.

The steps of tokenize: accents {accents!r} ('fold': NFKD, combining marks removed; 'drop':
left to the next step), lower-case, ASCII characters only, nltk's word_tokenize(text,
preserve_line=True) (below: its rules, written out from nltk {nltk}'s NLTKWordTokenizer;
nltk, Copyright the NLTK Project, Apache License 2.0), a final '.' split off a token that holds
no other '.', and tokens of punctuation only dropped.
"""

import json
import re
import sys
import unicodedata
from pathlib import Path

ACCENTS = {accents!r}
WORD_CHARS = {word_chars}  # characters per token a model that reads characters takes (0: none)
CHARACTERS = {characters!r}  # a character's id: its place here + 1; any other: len + 1
PUNCTUATION = frozenset({punctuation!r})

{tables}

def word_tokenize(text):
    """nltk.tokenize.word_tokenize(text, preserve_line=True)."""
    for pattern, substitution in STARTING_QUOTES:
        text = pattern.sub(substitution, text)
    for pattern, substitution in PUNCTUATION_RULES:
        text = pattern.sub(substitution, text)
    for pattern, substitution in (PARENS_BRACKETS, DOUBLE_DASHES):
        text = pattern.sub(substitution, text)
    text = " " + text + " "
    for pattern, substitution in ENDING_QUOTES:
        text = pattern.sub(substitution, text)
    for pattern in CONTRACTIONS:
        text = pattern.sub(r" \\1 \\2 ", text)
    return text.split()


def tokenize(text):
    if ACCENTS == "fold":
        text = "".join(
            c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)
        )
    text = text.lower().encode("ascii", "ignore").decode("ascii")
    tokens = []
    for token in word_tokenize(text):
        if len(token) > 1 and token.endswith(".") and "." not in token[:-1]:
            token = token[:-1]
        if not PUNCTUATION.issuperset(token):
            tokens.append(token)
    return tokens


def char_ids(token):
    ids = [CHARACTERS.index(c) + 1 if c in CHARACTERS else len(CHARACTERS) + 1
           for c in token[:WORD_CHARS]]
    return ids + [0] * (WORD_CHARS - len(ids))


def encode(rows, vocabulary, known=None):
    """The inputs for rows of {{"question", "passage"}}: unknown words are skipped (kept, with
    ids above the vocabulary's in the order met, when the model reads characters); a part
    with no word left is a ValueError. `known` (known.txt's lines, an ensemble's export): which
    members know each word; a part with no word some member knows is a ValueError too."""
    index = {{word: i for i, word in enumerate(vocabulary)}}
    unknown = {{}}
    parts = {{"question": [], "passage": []}}
    chars = {{"question": [], "passage": []}}
    for number, row in enumerate(rows):
        for part in ("question", "passage"):
            tokens = tokenize(row[part])
            if not WORD_CHARS:
                tokens = [t for t in tokens if t in index]
            if not tokens:
                raise ValueError(f"row {{number}}: the {{part}} has no word the model knows")
            for member in range(len(known[0]) if known else 0):
                if all(known[index[t]][member] == "0" for t in tokens):
                    raise ValueError(
                        f"row {{number}}: the {{part}} has no word member {{member}} knows"
                    )
            parts[part].append([
                index[t] + 1 if t in index else len(index) + 1 + unknown.setdefault(t, len(unknown))
                for t in tokens
            ])
            chars[part].append([char_ids(t) for t in tokens])
    inputs = {{"lengths": [[len(q), len(p)] for q, p in zip(parts["question"], parts["passage"])]}}
    for part, lists in parts.items():
        longest = max(map(len, lists))
        inputs[part] = [ids + [0] * (longest - len(ids)) for ids in lists]
        if WORD_CHARS:
            blank = [0] * WORD_CHARS
            inputs[part + "_chars"] = [c + [blank] * (longest - len(c)) for c in chars[part]]
    return inputs


def check(folder=Path(__file__).parent, tolerance=1e-4):
    """model.onnx's answers for check.jsonl, one row at a time, against kboolq's."""
    import numpy as np
    import onnxruntime

    vocabulary = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    known = folder / "{known_file}"
    known = known.read_text().splitlines() if known.exists() else None
    manifest = json.loads((folder / "manifest.json").read_text())
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"))
    rows = [json.loads(line) for line in (folder / "check.jsonl").open(encoding="utf-8")]
    worst = 0.0
    for row in rows:
        inputs = encode([row], vocabulary, known)
        feed = {{name: np.asarray(inputs[name], np.int64) for name in manifest["graph_inputs"]}}
        p_yes = float(session.run(None, feed)[0][0, 0])
        worst = max(worst, abs(p_yes - row["p_yes"]))
    print(f"{{len(rows)}} rows, largest difference from kboolq's answers {{worst:.2e}}")
    return worst <= tolerance


if __name__ == "__main__":
    sys.exit(0 if check() else 1)
'''
