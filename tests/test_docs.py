"""The docs stay true: the params reference is generated from the schema, and the README is short and says
what CI runs."""

from demo2reward.reference import params_reference
from tests.conftest import ROOT


def test_params_reference_is_current():
    committed = (ROOT / "docs" / "params.md").read_text()
    assert committed == params_reference(), "docs/params.md is stale: python -m demo2reward.reference > docs/params.md"


def test_readme_is_short_and_leads_with_the_two_commands_and_the_results():
    readme = (ROOT / "README.md").read_text()
    assert len(readme) <= 12_000
    first_screen = readme[: readme.index("## The method")]
    assert "dvc repro" in first_screen and "python -m pytest" in first_screen and "## Results" in first_screen


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = next(line for line in readme.splitlines() if "pip install -e '.[test]'" in line)
    assert command.strip() in (ROOT / ".ci" / "run").read_text()


def test_every_doc_link_resolves():
    import re

    for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc.read_text()):
            if not target.startswith("http"):
                assert (doc.parent / target).exists(), f"{doc.name} links to a missing {target}"
