"""The three descriptions of the environment agree: pyproject.toml (ranges), environment.yml
(conda route, same packages and ranges) and requirements-lock.txt (exact pins for CI and
grading); and the Makefile / CI actually use the lock file."""
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]

# conda-forge name -> PyPI name, where they differ
CONDA_TO_PIP = {"pytorch": "torch", "psycopg2": "psycopg2-binary"}
NOT_PACKAGES = {"python", "pip"}

LOCKED_TORCH = {"torch": "2.14.1", "torchvision": "0.29.1"}


# --------------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------------

def _pyproject():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def pyproject_requirements() -> dict[str, Requirement]:
    project = _pyproject()["project"]
    reqs = list(project["dependencies"]) + list(project.get("optional-dependencies", {})
                                                .get("dev", []))
    out = {}
    for text in reqs:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name not in out, f"pyproject.toml lists {req.name} twice"
        out[name] = req
    return out


def _conda_dependencies() -> list:
    """The raw dependencies list of environment.yml (strings, and the {'pip': [...]} entry)."""
    text = (ROOT / "environment.yml").read_text()
    try:
        import yaml
    except ImportError:  # a tiny parser for the flat layout this file uses
        deps, in_deps, in_pip = [], False, False
        for line in text.splitlines():
            stripped = line.split("#", 1)[0].rstrip()
            if not stripped:
                continue
            if not line.startswith(" "):
                in_deps = stripped == "dependencies:"
                continue
            if not in_deps:
                continue
            indent = len(line) - len(line.lstrip())
            item = stripped.strip()[2:].strip() if stripped.strip().startswith("- ") else None
            if item == "pip:":
                in_pip = True
                deps.append({"pip": []})
            elif in_pip and indent > 2:
                deps[-1]["pip"].append(item)
            elif item is not None:
                in_pip = False
                deps.append(item)
        return deps
    return yaml.safe_load(text)["dependencies"]


_CONDA_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?P<spec>.*)$")


def conda_requirements() -> dict[str, str]:
    """pip name -> version spec string, for every conda package but python and pip."""
    out = {}
    for dep in _conda_dependencies():
        if not isinstance(dep, str):
            continue  # the pip: subsection installs genlab itself
        match = _CONDA_SPEC.match(dep.strip())
        assert match, f"environment.yml: cannot read dependency {dep!r}"
        conda_name = match["name"]
        if conda_name in NOT_PACKAGES:
            continue
        name = canonicalize_name(CONDA_TO_PIP.get(conda_name, conda_name))
        assert name not in out, f"environment.yml lists {conda_name} twice"
        out[name] = match["spec"].strip()
    return out


def lock_pins() -> dict[str, str]:
    out = {}
    for lineno, line in enumerate((ROOT / "requirements-lock.txt").read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", \
            f"requirements-lock.txt:{lineno}: {line!r} is not an exact pin NAME==VERSION"
        name = canonicalize_name(req.name)
        assert name not in out, f"requirements-lock.txt pins {req.name} twice"
        out[name] = specs[0].version
    return out


# --------------------------------------------------------------------------------------------
# pyproject.toml <-> environment.yml
# --------------------------------------------------------------------------------------------

def test_parsers_see_the_packages():
    py, conda = pyproject_requirements(), conda_requirements()
    assert {"torch", "torchvision", "nbgrader", "pytest"} <= set(py)
    assert {"torch", "torchvision", "nbgrader", "pytest"} <= set(conda)
    assert "python" not in conda and "pip" not in conda and "pytorch" not in conda


def test_environment_yml_has_every_pyproject_package():
    missing = sorted(set(pyproject_requirements()) - set(conda_requirements()))
    assert not missing, (f"in pyproject.toml but not in environment.yml: {', '.join(missing)} "
                         "(conda names: pytorch for torch)")


def test_pyproject_has_every_environment_yml_package():
    extra = sorted(set(conda_requirements()) - set(pyproject_requirements()))
    assert not extra, f"in environment.yml but not in pyproject.toml: {', '.join(extra)}"


def test_environment_yml_ranges_match_pyproject():
    py, conda = pyproject_requirements(), conda_requirements()
    different = [f"{name}: pyproject {py[name].specifier or '(any)'} vs environment.yml "
                 f"{conda[name] or '(any)'}"
                 for name in sorted(set(py) & set(conda))
                 if SpecifierSet(conda[name]) != py[name].specifier]
    assert not different, "version ranges differ:\n" + "\n".join(different)


def test_environment_yml_installs_genlab_without_deps():
    deps = _conda_dependencies()
    pip_sections = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml needs one pip: subsection"
    assert "pip" in deps, "the pip: subsection needs pip in the conda dependencies"
    assert "-e ." in pip_sections[0]
    assert "--no-deps" in pip_sections[0], "pip must not pull PyPI wheels over the conda packages"
    python = [d for d in deps if isinstance(d, str) and re.match(r"python\b", d)]
    assert python, "environment.yml pins no python"
    version = re.sub(r"^python\s*=*\s*", "", python[0])
    requires = SpecifierSet(_pyproject()["project"]["requires-python"])
    assert Version(version) in requires, f"python {version} does not meet requires-python {requires}"


# --------------------------------------------------------------------------------------------
# requirements-lock.txt
# --------------------------------------------------------------------------------------------

def test_lock_pins_torch_exactly():
    pins = lock_pins()
    for name, version in LOCKED_TORCH.items():
        assert pins.get(name) == version, \
            f"requirements-lock.txt must pin {name}=={version}, has {pins.get(name, 'nothing')}"


def test_lock_pins_every_pyproject_dependency():
    pins = lock_pins()
    missing = sorted(set(pyproject_requirements()) - set(pins))
    assert not missing, f"not pinned in requirements-lock.txt: {', '.join(missing)}"


def test_lock_pins_satisfy_pyproject_ranges():
    pins = lock_pins()
    bad = [f"{name}=={pins[name]} is outside pyproject's {req.specifier}"
           for name, req in sorted(pyproject_requirements().items())
           if name in pins and not req.specifier.contains(pins[name], prereleases=True)]
    assert not bad, "\n".join(bad)


def test_lock_does_not_pin_genlab_itself():
    assert "genlab" not in lock_pins(), "the lock must not pin the package under development"


# --------------------------------------------------------------------------------------------
# Makefile and CI
# --------------------------------------------------------------------------------------------

def _makefile():
    """(variables, rules): rules maps target -> (prerequisites, recipe lines), variables expanded."""
    variables, rules, current = {}, {}, None
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line.startswith("\t"):
            if current is not None:
                rules[current][1].append(line.strip())
            continue
        current = None
        code = line.split("#", 1)[0].rstrip()
        if not code:
            continue
        assign = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(\?=|:=|=)\s*(.*)$", code)
        if assign:
            variables[assign[1]] = assign[3].strip()
            continue
        rule = re.match(r"^([^:=]+):(?!=)(.*)$", code)
        if rule:
            for target in rule[1].split():
                rules[target] = (rule[2].split(), [])
                current = target

    def expand(text, depth=0):
        if depth > 10:
            return text
        new = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: variables.get(m[1], m[0]), text)
        return new if new == text else expand(new, depth + 1)

    rules = {expand(t): ([expand(p) for p in prereqs], [expand(r) for r in recipe])
             for t, (prereqs, recipe) in rules.items()}
    return variables, rules


def _recipes_reached_from(target, rules):
    """Every recipe line run for ``target``, prerequisites first."""
    seen, lines = set(), []

    def visit(name):
        if name in seen or name not in rules:
            return
        seen.add(name)
        prereqs, recipe = rules[name]
        for p in prereqs:
            visit(p)
        lines.extend(recipe)

    visit(target)
    return lines


# A recipe line that runs pip install (not one that merely mentions it, e.g. in an echo).
_PIP_INSTALL = re.compile(r"^@?-?\s*\S*(?:python[0-9.]*\s+-m\s+pip|pip[0-9.]*)\s+install\b")
_CONSTRAINT = re.compile(_PIP_INSTALL.pattern +
                         r".*\s(?:-c\s*|--constraint[ =])requirements-lock\.txt(?:\s|$)")


def test_makefile_test_target_installs_with_lock_constraints():
    _, rules = _makefile()
    assert "test" in rules, "the Makefile has no test target"
    lines = _recipes_reached_from("test", rules)
    installs = [line for line in lines if _PIP_INSTALL.search(line) and " -e " in line]
    assert installs, "make test never installs genlab"
    assert any(_CONSTRAINT.search(line) for line in installs), \
        f"make test does not install with -c requirements-lock.txt: {installs}"
    assert any("pytest" in line for line in rules["test"][1]), "make test does not run pytest"


def test_makefile_reinstalls_when_lock_changes():
    _, rules = _makefile()
    stamps = [t for t, (prereqs, recipe) in rules.items()
              if any(_CONSTRAINT.search(r) for r in recipe)]
    assert stamps, "no Makefile rule installs with the lock file"
    for target in stamps:
        assert "requirements-lock.txt" in rules[target][0], \
            f"{target} does not depend on requirements-lock.txt, so a new lock is never installed"
        assert "pyproject.toml" in rules[target][0]


def test_ci_runs_make_test():
    path = ROOT / ".ci" / "run"
    assert path.exists(), ".ci/run is missing"
    commands = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    assert any(re.fullmatch(r"(exec\s+)?make\s+test", c) for c in commands), \
        ".ci/run does not call `make test`"
    assert path.stat().st_mode & 0o111, ".ci/run is not executable"


@pytest.mark.parametrize("name", ["pytest-timeout", "nbval"])
def test_test_tools_are_declared(name):
    # The suite relies on these plugins; they must come with .[dev] / the main dependencies.
    assert canonicalize_name(name) in pyproject_requirements()


def test_fallback_parser_agrees_with_yaml(monkeypatch):
    yaml = pytest.importorskip("yaml")
    with_yaml = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    monkeypatch.setitem(__import__("sys").modules, "yaml", None)  # import yaml -> ImportError
    assert _conda_dependencies() == with_yaml
