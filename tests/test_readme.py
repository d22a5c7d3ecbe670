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


def test_config_reference_cli(tmp_path, capsys):
    from framegan.config_reference import BEGIN, END, main

    assert main([]) == 0 and "| `loss.adv_motion_weight` |" in capsys.readouterr().out
    doc = tmp_path / "R.md"
    doc.write_text(f"intro\n{BEGIN}\nstale\n{END}\noutro\n")
    assert main(["--write", str(doc)]) == 0
    text = doc.read_text()
    assert "stale" not in text and "| `train.steps` | `1000` |" in text and text.endswith("outro\n")
    doc.write_text("no markers")
    assert main(["--write", str(doc)]) == 2
    assert capsys.readouterr().err.startswith("error:")
