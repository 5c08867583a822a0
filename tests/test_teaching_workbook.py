"""What a learner finds inside the workbook: headers, links both ways, notes on the first
formula of each step, colour scales, tab colours; read back with openpyxl."""
from __future__ import annotations

import re

import openpyxl
import pytest
from openpyxl.worksheet.formula import ArrayFormula

from sheetgpt.architectures import lay_out
from sheetgpt.load import load_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from sheetgpt.builder import build_workbook

    model = load_model("tiny")
    path = tmp_path_factory.mktemp("teach") / "tiny.xlsx"
    result = build_workbook(model, "Mike is quick. He moves", path, progress=False)
    wb = openpyxl.load_workbook(path)
    yield wb, lay_out(model.weights.config, len(result.ids))
    wb.close()


def _links(ws) -> list:
    return [c.hyperlink for row in ws.iter_rows() for c in row if c.hyperlink is not None]


def _target_sheet(location: str) -> str:
    m = re.match(r"^'?(.*?)'?!", location)
    return m.group(1).replace("''", "'")


def test_guide_links_reach_every_sheet_and_every_sheet_links_back(tiny):
    wb, layout = tiny
    guide = wb["Guide"]
    targets = {_target_sheet(h.location) for h in _links(guide)}
    visible = {s.name for s in layout.sheets if s.stage not in ("guide", "meta")}
    assert targets == visible
    assert targets <= set(wb.sheetnames)
    for name in visible:
        links = _links(wb[name]) if wb[name].max_row < 1000 else [wb[name]['A2'].hyperlink]
        assert any(_target_sheet(h.location) == "Guide" and h.ref == "A2" for h in links), name
        assert "Guide" in str(wb[name]["A2"].value)


def test_every_step_has_a_header_a_defined_name_and_a_note(tiny):
    wb, layout = tiny
    for sheet in layout.sheets:
        if sheet.stage in ("guide", "meta"):
            continue
        title = wb[sheet.name]["A1"].value
        assert isinstance(title, str) and len(title) > 15 and "[" in title, (sheet.name, title)  # words + shape
    for step in layout.steps:
        assert step in wb.defined_names, step
        blk = layout.blocks[step]
        first = wb[blk.sheet].cell(blk.row, blk.col)
        text = first.value.text if isinstance(first.value, ArrayFormula) else first.value  # {=MMULT(...)}
        assert isinstance(text, str) and text.startswith("="), step
        assert first.comment is not None and len(first.comment.text) > 20, step


def test_colour_scales_on_attention_weights_and_top_k(tiny):
    wb, layout = tiny
    for sheet in [s.name for s in layout.sheets if s.name.endswith(" probs")] + ["prediction"]:
        rules = [r for cf in wb[sheet].conditional_formatting for r in cf.rules]
        assert any(r.type == "colorScale" for r in rules), sheet
    probs = layout.blocks["h0_probs"]
    ranges = {str(cf.sqref) for cf in wb["h0 probs"].conditional_formatting}
    assert ranges == {f"B{probs.row}:{openpyxl.utils.get_column_letter(probs.col + probs.n_cols - 1)}"
                      f"{probs.row + probs.n_rows - 1}"}


def test_tab_colours_by_stage_and_frozen_headers(tiny):
    wb, layout = tiny
    colours: dict[str, set] = {}
    for sheet in layout.sheets:
        ws = wb[sheet.name]
        if sheet.stage in ("attention", "mlp", "embedding", "output"):
            colours.setdefault(sheet.stage, set()).add(ws.sheet_properties.tabColor.rgb)
            assert ws.freeze_panes == "B3", sheet.name
    assert all(len(c) == 1 for c in colours.values())
    assert len({next(iter(c)) for c in colours.values()}) == 4  # one colour per stage
