"""`rasa test` on the held-out NLU sets (one per language) and on the test stories, with
the cached model. Prints intent F1 per language and story success at the end of the run
(see tests/conftest.py `report`) and holds them to the targets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.rasa_runtime import RASA_PROJECT, rasa_env
from tests.conftest import report

pytestmark = pytest.mark.e2e

F1_TARGET = 0.90


def _start(venv: Path, args: list[str], log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "wb")
    try:
        return subprocess.Popen([str(venv / "bin" / "rasa"), *args], cwd=RASA_PROJECT, env=rasa_env(venv),
                                stdout=out, stderr=subprocess.STDOUT)
    finally:
        out.close()


@pytest.fixture(scope="module")
def evaluation(rasa_install: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Runs the three evaluations side by side (each mostly waits for TensorFlow to load)."""
    venv, model = rasa_install
    out = tmp_path_factory.mktemp("rasa-test")
    runs = {
        "en": ["test", "nlu", "--model", str(model), "--nlu", "tests/nlu_en.yml", "--out", str(out / "en"),
               "--no-plot"],
        "zh": ["test", "nlu", "--model", str(model), "--nlu", "tests/nlu_zh.yml", "--out", str(out / "zh"),
               "--no-plot"],
        "core": ["test", "core", "--model", str(model), "--stories", "tests/test_stories.yml", "--out",
                 str(out / "core"), "--no-plot"],
    }
    procs = {name: _start(venv, args, out / f"{name}.log") for name, args in runs.items()}
    for name, proc in procs.items():
        code = proc.wait(timeout=600)
        assert code == 0, f"rasa {' '.join(runs[name][:2])} failed ({code}):\n{(out / f'{name}.log').read_text()[-3000:]}"
    return {name: out / name for name in runs}


def _report(line: str) -> None:
    report(line)
    print(line, file=sys.__stdout__, flush=True)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_intent_f1_on_held_out_data(evaluation: dict[str, Path], lang: str, record_property) -> None:
    report = json.loads((evaluation[lang] / "intent_report.json").read_text())
    weighted = report["weighted avg"]["f1-score"]
    macro = report["macro avg"]["f1-score"]
    support = report["weighted avg"]["support"]
    errors = json.loads((evaluation[lang] / "intent_errors.json").read_text()) \
        if (evaluation[lang] / "intent_errors.json").exists() else []
    worst = sorted((v["f1-score"], k) for k, v in report.items()
                   if isinstance(v, dict) and "f1-score" in v and k not in ("weighted avg", "macro avg", "micro avg"))[:3]
    accuracy = report.get("accuracy", report.get("micro avg", {}).get("f1-score", 0.0))
    _report(f"NLU {lang}: intent accuracy {accuracy:.3f}, F1 weighted {weighted:.3f}, macro {macro:.3f} "
            f"on {support} held-out examples "
            f"({len(errors)} misclassified; lowest: {', '.join(f'{k} {f:.2f}' for f, k in worst)})")
    record_property(f"intent_f1_{lang}", round(weighted, 4))
    assert weighted >= F1_TARGET and macro >= F1_TARGET, \
        [f"{e['text']!r}: {e['intent']} -> {e['intent_prediction']['name']}" for e in errors]


def test_every_test_story_passes(evaluation: dict[str, Path], record_property) -> None:
    report = json.loads((evaluation["core"] / "story_report.json").read_text())
    conv = report["conversation_accuracy"]
    actions = report.get("accuracy", report.get("micro avg", {}).get("f1-score", 0.0))
    _report(f"Stories: {conv['correct']}/{conv['total']} test stories pass "
            f"(story success {conv['accuracy']:.0%}, action accuracy {actions:.3f})")
    record_property("story_success", conv["accuracy"])
    failed = evaluation["core"] / "failed_test_stories.yml"
    assert conv["correct"] == conv["total"], failed.read_text() if failed.exists() else report
