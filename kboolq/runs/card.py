"""The model card, RUN_DIR/README.md: what a run is, how it was made and how well it does.

Written with the run (fit, fit --seeds, ensemble, the grid's best/) and so replaced whenever the
run is. YAML front matter in the form model hubs read (language, tags, datasets, metrics and a
model-index of the results), then Markdown that renders on GitHub.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import torch

import kboolq
from kboolq.config import Config, DataSettings
from kboolq.data.layout import Prepared
from kboolq.files import write_text
from kboolq.runs.rundir import CARD_FILE, CURVES_FILE, RunInfo

if TYPE_CHECKING:
    from kboolq.runs.api import OpenMix

SPLITS = ("valid", "test")
TRAINED = re.compile(r"^Training time: (\d+) s;", re.MULTILINE)  # the card's line, card_text's


def card_seconds(run_dir: Path) -> float | None:
    """The training time RUN_DIR's card gives (None: no card, or it says "not measured here")."""
    card = Path(run_dir) / CARD_FILE
    text = card.read_text(encoding="utf-8", errors="replace") if card.is_file() else ""
    found = TRAINED.search(text)
    return float(found.group(1)) if found else None


def fit_command(info: RunInfo, extra: str = "") -> str:
    """The fit command that makes this run's settings, every flag spelled out."""
    words = ["python", "-m", "kboolq.fit"]
    data = info.data
    for f in fields(DataSettings):
        words += [f.metadata["flag"], str(getattr(data, f.name))]
    for f in fields(Config):
        words += [f.metadata["flag"], str(getattr(info.config, f.name))]
    if info.distillation is not None:
        words += ["--distill", info.distillation.teacher]
        words += ["--distill-weight", str(info.distillation.weight)]
    return shlex.join(words) + (f" {extra}" if extra else "")


def machine() -> str:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU only"
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, {device}; "
        f"Python {platform.python_version()}, torch {torch.__version__}, keras "
        f"{keras.__version__} on the {keras.backend.backend()} backend, kboolq "
        f"{kboolq.__version__}"
    )


def _front_matter(name: str, info: RunInfo, reports: dict[str, dict]) -> list[str]:
    lines = [
        "---",
        "language: en",
        "library_name: keras",
        "pipeline_tag: text-classification",
        "tags: [kboolq, boolq, yes-no-question-answering, glove, gru]",
        "datasets: [google/boolq]",
        "metrics: [accuracy, balanced_accuracy, f1]",
        "model-index:",
        f"- name: {name}",
        "  results:",
    ]
    for split in SPLITS:
        if split not in reports:
            continue
        report = reports[split]
        lines += [
            "  - task: {type: text-classification, name: yes/no question answering}",
            f"    dataset: {{type: boolq, name: BoolQ, split: {split}}}",
            "    metrics:",
            f"    - {{type: accuracy, value: {report['accuracy']:.4f}}}",
            f"    - {{type: balanced_accuracy, value: {report['balanced_accuracy']:.4f}}}",
            f"    - {{type: f1, name: macro F1, value: {report['macro_f1']:.4f}}}",
        ]
    return [*lines, "---", ""]


def _model_lines(info: RunInfo, model: keras.Model | OpenMix, directory: Path) -> list[str]:
    """The model section: one model's architecture, layout and vectors, or an ensemble's
    members that read their own inputs (an OpenMix), one line each."""
    config, layout = info.config, info.layout
    if not isinstance(model, keras.Model):
        lines = [
            f"- an ensemble of {len(model.members)} members that each read their own input "
            f"(answers: the mean of their P(yes)), {model.count_params():,} parameters:"
        ]
        for member in model.members:
            where = os.path.relpath(member.path.resolve(), Path(directory).resolve())
            vectors = member.info.vectors
            lines.append(
                f"  - `{where}`: `{member.info.config.arch}` over `{vectors.source}` "
                f"({vectors.dim}-d, fingerprint `{vectors.fingerprint[:16]}`)"
            )
        return lines
    return [
        f"- architecture: `{config.arch}` ({model.name}), {model.count_params():,} parameters",
        f"- layout: question {layout.q_max} + separator {layout.separator} + passage "
        f"{layout.p_max} positions (longer passages: the tail averaged into the last one)"
        + (
            f"; each word's first {layout.word_chars} characters read by a character CNN "
            f"(--chars {config.chars})"
            if layout.word_chars
            else ""
        ),
        f"- vectors: `{info.vectors.source}`, {info.vectors.dim}-d, fingerprint "
        f"`{info.vectors.fingerprint[:16]}`",
    ]


def card_text(
    directory: Path,
    name: str,
    info: RunInfo,
    model: keras.Model | OpenMix,
    reports: dict[str, dict],
    made_by: str,
    prepared: Prepared | None = None,
    seconds: float | None = None,
) -> str:
    config, layout = info.config, info.layout
    lines = _front_matter(name, info, reports)
    lines += [
        f"# {name}: a kboolq yes/no question answerer",
        "",
        'Answers BoolQ-style questions ("is the sky blue") about an English passage with '
        f"P(yes). Made with kboolq (Keras 3 on {keras.backend.backend()}) from GloVe word "
        "vectors.",
        "",
        "## Model",
        "",
        *_model_lines(info, model, directory),
        "",
        "## Training data",
        "",
        f"- source: `{info.data.source}` (valid = the last {info.data.valid_size} train rows, "
        "test = the official validation split)",
    ]
    if prepared is not None:
        sizes = ", ".join(f"{split} {len(rows)}" for split, rows in prepared.splits.items())
        lines.append(f"- rows: {sizes}")
    if info.held_out is not None:
        lines.append(
            f"- trained without fold {info.held_out.fold} of {info.held_out.folds} of the train "
            "rows (a fit --train-folds member: its answers for that fold are out of fold)"
        )
    if info.preprocess_fingerprint:
        lines.append(f"- preprocessing fingerprint: `{info.preprocess_fingerprint[:16]}`")
    lines += ["", "## How it was made", "", "```bash", made_by, "```", ""]
    hyper = ", ".join(f"{key} {value}" for key, value in config.to_dict().items())
    lines += [f"Hyperparameters: {hyper}.", ""]
    trained = f"{seconds:.0f} s" if seconds is not None else "not measured here"
    lines += [f"Training time: {trained}; machine: {machine()}.", ""]
    lines += ["## Results", "", "| split | accuracy | balanced accuracy | macro F1 | PR-AUC |"]
    lines.append("|---|---|---|---|---|")
    for split in SPLITS:
        if split in reports:
            r = reports[split]
            lines.append(
                f"| {split} | {r['accuracy']:.4f} | {r['balanced_accuracy']:.4f} | "
                f"{r['macro_f1']:.4f} | {r['pr_auc']:.4f} |"
            )
    for split in SPLITS:
        if split in reports:
            (tn, fp), (fn, tp) = reports[split]["confusion_matrix"]
            lines += [
                "",
                f"Confusion matrix, {split} (rows: true answer):",
                "",
                "| | predicted no | predicted yes |",
                "|---|---|---|",
                f"| no | {tn} | {fp} |",
                f"| yes | {fn} | {tp} |",
            ]
    if (Path(directory) / CURVES_FILE).exists():
        lines += ["", "![learning curves](learning_curves.png)"]
    lines += [
        "",
        "## Use it",
        "",
        "```python",
        "import kboolq",
        f'run = kboolq.load_run("{name}")',
        'run.predict([{"question": "is the sky blue", "passage": "The sky is blue."}])',
        "```",
        "",
        "```bash",
        f'python -m kboolq.predict {name} --question "is the sky blue" --passage "It is blue."',
        f"python -m kboolq.serve {name}                 # HTTP: POST /predict",
        f"python -m kboolq.export {name} --out {name}-onnx   # ONNX + a stdlib tokenizer",
        "```",
        "",
        "## Limits",
        "",
        "- English only; trained on Wikipedia passages and search-engine questions (BoolQ).",
        "- Words outside the vectors' vocabulary "
        + ("have only their characters' vector" if layout.word_chars else "are skipped"),
    ]
    if prepared is not None and prepared.token_count:
        share = prepared.oov_count / prepared.token_count
        lines[-1] += f" ({share:.1%} of the tokens it was trained and scored on)"
    lines[-1] += (
        "; a question or passage without a word is refused."
        if layout.word_chars
        else "; a question or passage without a known word is refused."
    )
    lines += [
        "- About 62 % of BoolQ's answers are yes: compare with balanced accuracy, not accuracy.",
        "",
    ]
    return "\n".join(lines)


def write_card(directory: Path, name: str, *args: Any, **kwargs: Any) -> None:
    """Write card_text(...) as `directory`/README.md (atomically); `name` is the run
    directory's final name (`directory` may be its staging directory)."""
    write_text(Path(directory) / CARD_FILE, card_text(directory, name, *args, **kwargs))
