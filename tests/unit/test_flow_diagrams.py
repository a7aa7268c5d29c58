"""docs/flows.md's diagrams are the flows as they run: drawn from the forms' SLOTS tables and
from the decisions run on flows/policies.yml (flows/diagrams.py). A form, policy or question
edited without `python -m flows.diagrams --write` fails here; and the diagrams follow such
an edit (a window, a reason, a step) without anyone touching the generator."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from flows.diagrams import BEGIN, DOC, END, Diagrams, render_into
from flows.forms import FORMS, ExchangeForm
from flows.forms.base import Slot
from flows.policies import Policies, load_policies
from flows.texts import load_texts


@pytest.fixture(scope="module")
def policies() -> Policies:
    return load_policies()


def mermaid_blocks(text: str) -> list[str]:
    return re.findall(r"```mermaid\n(.*?)```", text, re.DOTALL)


def test_the_docs_show_the_diagrams_the_flows_make() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1, f"{DOC} needs one {BEGIN} ... {END} part"
    assert render_into(text) == text, "docs/flows.md's flow diagrams are stale: run python -m flows.diagrams --write"


def test_every_flow_and_category_has_a_well_formed_flowchart(policies: Policies) -> None:
    section = Diagrams(policies).section()
    for form in FORMS:
        assert f"(`{form.name}`)" in section
        for spec in form.SLOTS:
            assert f"`{spec.name}`" in section  # every step of every table
    for cat in policies.categories.values():
        assert f"#### Return of {cat.names['en']} (`{cat.key}`" in section
    blocks = mermaid_blocks(section)
    assert len(blocks) == 1 + len(policies.categories) + 3  # return overview, one per category, the other three
    for block in blocks:
        lines = block.strip().splitlines()
        assert lines[0] == "flowchart TD"
        defined = {m.group(1) for line in lines if (m := re.match(r"\s+(n\d+)[\[({]", line))}
        for line in lines[1:]:
            edge = re.match(r"\s+(n\d+) -->(?:\|\"([^\"]*)\"\|)? (n\d+)$", line)
            if edge:
                assert {edge.group(1), edge.group(3)} <= defined, line
            elif not line.lstrip().startswith(("classDef ", "class ")):
                # A box: its label in quotes, with no quote or bracket left raw inside it.
                assert re.match(r'\s+n\d+(\(\[|\[/|\[|\{)"[^"]*"(\]\)|/\]|\]|\})$', line), line


def test_the_branches_follow_the_policy_file(policies: Policies) -> None:
    shoes = policies.categories["shoes"]
    shown = Diagrams(policies).section()
    assert "no-reason return within 30 days" in shown and "out of the 90-day window" in shown
    # A designer shortens the no-reason window and stops taking returns for a wrong size.
    edited = replace(policies, categories={**policies.categories, "shoes": replace(
        shoes, no_reason_days=14, accepted_reasons=tuple(r for r in shoes.accepted_reasons if r != "wrong_size"),
        reason_rules={})})
    redrawn = Diagrams(edited).section()
    shoes_part = redrawn.split("#### Return of leather shoes")[1].split("####")[0]
    assert "no-reason return within 14 days" in shoes_part and "delivered 15-90 days ago" in shoes_part
    assert "Wrong size" not in shoes_part and "Exchange for another size" not in shoes_part
    assert "no-reason return within 30 days" not in shoes_part


def test_the_steps_follow_the_forms_tables(policies: Policies) -> None:
    class WithGiftNote(ExchangeForm):
        SLOTS = (*ExchangeForm.SLOTS, Slot("gift_note", "read_variant", when="only for gifts"))

    forms = tuple(WithGiftNote if form is ExchangeForm else form for form in FORMS)
    shown = Diagrams(policies, load_texts(), forms).section()
    exchange = shown.split("### Exchange")[1].split("### Complaint")[0]
    assert "| `gift_note` |" in exchange and "only for gifts" in exchange
    assert "gift_note: " in exchange  # asked after the variant, in the diagram too


def test_render_into_needs_the_markers() -> None:
    with pytest.raises(ValueError, match="flows:begin"):
        render_into("# no markers here\n")
