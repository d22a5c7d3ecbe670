"""README facts that code can check: the config reference is generated, the set-up commands run what
they promise, and setup.py installs what the code imports."""
import ast
import importlib
import importlib.metadata
import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from framegan.config_reference import render

ROOT = Path(__file__).parents[1]


def test_config_reference_is_up_to_date():
    readme = (ROOT / "README.md").read_text()
    assert render(readme) == readme, "run: python -m framegan.config_reference --write README.md"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("target, command", [("demo", "-m framegan.demo"), ("test", "-m pytest -q tests")])
def test_make_targets_run_the_promised_commands(target, command):
    """What `make demo` / `make test` would execute (dry run): install the package with its dev
    extras, then the demo module / the test suite."""
    assert f"make {target}" in (ROOT / "README.md").read_text()
    done = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(ROOT), target],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-1].endswith(command) and "-m" in lines[-1]
    if len(lines) > 1:  # the venv is not set up yet: the install comes first
        assert any('install -q -e ".[dev]"' in line for line in lines[:-1])


def test_every_readme_command_names_a_module_with_main():
    modules = set(re.findall(r"python -m (framegan(?:\.\w+)+)", (ROOT / "README.md").read_text()))
    assert {"framegan.train", "framegan.rollout", "framegan.evaluate"} <= modules
    for name in modules | {"framegan.demo"}:
        main = getattr(importlib.import_module(name), "main", None)
        assert callable(main) and "argv" in inspect.signature(main).parameters, name


def _setup_requirements() -> set[str]:
    call = next(n for n in ast.walk(ast.parse((ROOT / "setup.py").read_text()))
                if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    kw = {k.arg: ast.literal_eval(k.value) for k in call.keywords
          if k.arg in ("install_requires", "extras_require")}
    reqs = kw["install_requires"] + [r for extra in kw.get("extras_require", {}).values() for r in extra]
    return {re.split(r"[<>=!~\[; ]", r)[0].lower().replace("_", "-") for r in reqs}


def test_setup_declares_every_package_framegan_imports():
    """`make demo` installs from setup.py: a module framegan imports but setup.py does not name
    works here and fails for a new user."""
    declared = _setup_requirements()
    dists = importlib.metadata.packages_distributions()
    missing = set()
    for path in (ROOT / "framegan").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for top in {n.split(".")[0] for n in names} - set(sys.stdlib_module_names) - {"framegan"}:
                if not {d.lower().replace("_", "-") for d in dists.get(top, [top])} & declared:
                    missing.add(f"{top} ({path.relative_to(ROOT)})")
    assert not missing, f"imported but not in setup.py: {sorted(missing)}"


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


def test_readme_states_the_default_generator_size():
    from framegan.config import ModelConfig
    from framegan.nets import build_generator, count_params

    stated = re.search(r"The default G \(([\d.]+) M parameters", (ROOT / "README.md").read_text())
    assert stated, "README: the sentence 'The default G (X.XX M parameters ...' is gone"
    g = count_params(build_generator(ModelConfig(), 4))
    assert f"{g / 1e6:.2f}" == stated.group(1), f"the default G has {g:,} parameters; update the README"


@pytest.mark.parametrize("doc", ["README.md", "docs/results.md"])
def test_relative_links_resolve(doc):
    """Images and pages the README and the experiment record link to exist (a moved file or a
    section split off leaves a dead link otherwise)."""
    path = ROOT / doc
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text())
    local = [t for t in targets if "://" not in t]
    assert local, f"{doc} links to no local file: the pattern no longer matches"
    missing = [t for t in local if not (path.parent / t).exists()]
    assert not missing, f"{doc}: dead links {missing}"
