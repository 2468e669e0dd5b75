"""docs/fidelity.md lists every command the bundled tools answer with
"not implemented", and docs/usability.md every per-version kernel feature."""

from __future__ import annotations

from pathlib import Path

from cxlemu.kernel.features import FEATURES
from cxlemu.tools.cxl.main import build_tool
from cxlemu.tools.daxctl import main as daxctl_main
from cxlemu.tools.ndctl import main as ndctl_main

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _missing(tool) -> list[str]:
    return [c.name for c in tool.commands if c.fn is None and c.name not in ("version", "help")]


def test_fidelity_lists_every_unimplemented_command():
    text = (DOCS / "fidelity.md").read_text()
    section = text[text.index("## Commands cxlemu does not implement"):]
    daxctl = getattr(daxctl_main, "TOOL", None) or daxctl_main.build_tool()
    for name, tool in (("cxl", build_tool()), ("ndctl", ndctl_main.TOOL), ("daxctl", daxctl)):
        line = next(x for x in section.split("\n* ") if x.startswith(f"`{name}`"))
        for cmd in _missing(tool):
            assert f"`{cmd}`" in line, (name, cmd)
    assert "disable-dimm" not in _missing(ndctl_main.TOOL) and "enable-dimm" not in _missing(ndctl_main.TOOL)


def test_usability_lists_every_kernel_feature():
    text = (DOCS / "usability.md").read_text()
    for name in FEATURES:
        assert f"| `{name}` |" in text, name
