"""README facts that code can check: the config reference is generated, the set-up commands exist."""
from pathlib import Path

from framegan.config_reference import render

ROOT = Path(__file__).parents[1]


def test_config_reference_is_up_to_date():
    readme = (ROOT / "README.md").read_text()
    assert render(readme) == readme, "run: python -m framegan.config_reference --write README.md"


def test_setup_commands_are_make_targets():
    makefile = (ROOT / "Makefile").read_text()
    assert "\ndemo:" in makefile and "\ntest:" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()
