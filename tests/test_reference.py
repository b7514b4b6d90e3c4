"""The tokenizer an export ships (kboolq.reference): the standard library alone, and the same
tokens as kboolq's own tokenizer (nltk) on real and awkward text."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kboolq import reference
from kboolq.data.tokens import tokenize

REAL_ROWS = Path(__file__).parent / "data" / "boolq-real" / "rows.jsonl"
AWKWARD = [
    "He said \"hi\" -- (it's) U.S. e.g. can't won't... ok?! «quoted» 3,000 $5.00 tel: a:b",
    "gonna wanna 'tis 'twas cannot d'ye gimme lemme more'n",
    "Pokémon's café. Ærø — naïve “smart quotes” ‘single’ …",
    "end.",
    "a.b. c... d.e f. [x] {y} <z> 'quoted' '' `` #hash @at 50% & co; ok",
    "",
]


def _shipped(tmp_path: Path, accents: str, word_chars: int = 0):
    path = tmp_path / accents / reference.FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(reference.source(accents, word_chars))
    spec = importlib.util.spec_from_file_location(f"shipped_{accents}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, path


@pytest.mark.parametrize("accents", ["fold", "drop"])
def test_the_shipped_tokenizer_gives_kboolqs_tokens(tmp_path, accents):
    shipped, _ = _shipped(tmp_path, accents)
    texts = list(AWKWARD)
    for line in REAL_ROWS.read_text().splitlines():
        row = json.loads(line)
        texts += [row["question"], row["passage"]]
    differ = [t for t in texts if shipped.tokenize(t) != tokenize(t, accents)]
    assert differ == [] and len(texts) == 406


@pytest.mark.slow
def test_the_shipped_tokenizer_imports_nothing_beyond_the_standard_library(tmp_path):
    _, path = _shipped(tmp_path, "fold", 4)
    code = (
        "import sys, runpy; sys.modules['nltk'] = None; sys.modules['kboolq'] = None; "
        f"m = runpy.run_path({str(path)!r}); "
        "print(m['tokenize']('Is the U.S. big? It is.')); print(m['char_ids']('u.s')); "
        "print(sorted(n for n, module in sys.modules.items() if module is not None and "
        "n.split('.')[0] in ('numpy', 'nltk', 'regex', 'kboolq')))"
    )
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # 'u.s.' keeps its final '.' (it holds another); '.' is character 36 + 13 of CHARACTERS
    assert result.stdout.splitlines() == [
        "['is', 'the', 'u.s.', 'big', 'it', 'is']", "[21, 50, 19, 0]", "[]"
    ]  # fmt: skip


def test_encode_by_hand(tmp_path):
    shipped, _ = _shipped(tmp_path, "fold", 2)
    inputs = shipped.encode(
        [{"question": "Is the sky blue?", "passage": "Blue zzq sky."}], ["is", "the", "sky", "blue"]
    )
    assert inputs["question"] == [[1, 2, 3, 4]]
    assert inputs["passage"] == [[4, 5, 3]]  # zzq: unknown, kept with the first id above
    assert inputs["lengths"] == [[4, 3]]
    assert inputs["passage_chars"] == [[[2, 12], [26, 26], [19, 11]]]
