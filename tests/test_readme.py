"""README.md and docs/ stay true: every config key and output is documented, "Using the cloud" runs as
written, every relative link leads somewhere, the README stays a user's document, and no development
issue number leaks into the docs or the product's comments."""

from __future__ import annotations

import re
from pathlib import Path

from config.settings import Settings
from tests.harness import ROOT

README = (ROOT / "README.md").read_text()
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "examples").glob("*/README.md"))]
README_MAX_LINES = 350


def section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def test_every_config_key_is_in_the_configuration_table():
    table = section("Configuration")
    for name, field in Settings.model_fields.items():
        key = field.alias or name
        if name == "region":
            key = "aws:region"
        assert f"`{key}`" in table, key


def test_using_the_cloud_spells_options_out_and_finds_the_admin_projects_default_group():
    block = section("Using the cloud")
    commands = [line for line in block.splitlines() if line.startswith(("openstack ", "SG=", "ssh ", "sshuttle"))]
    assert commands
    # `--proto` works only as an abbreviation argparse may stop accepting; the option is `--protocol`.
    assert not any(re.search(r"--proto(\s|=)", line) for line in commands)
    rule = next(line for line in commands if "security group rule create" in line)
    assert "--protocol tcp" in rule
    # The admin sees every project's "default" group: the name alone is ambiguous.
    assert not re.search(r"\sdefault(\s|$)", rule.split("#")[0])
    lookup = next(line for line in commands if line.startswith("SG="))
    assert "--project admin" in lookup and '$2 == "default"' in lookup


def test_every_stack_output_is_documented():
    outputs = section("Outputs")
    program = (ROOT / "__main__.py").read_text()
    for name in re.findall(r'pulumi\.export\(\s*"(\w+)"', program):
        assert f"`{name}`" in outputs, name


def test_the_readmes_two_commands_do_what_it_says():
    """`make up STACK=dev` runs `pulumi up` on the stack; `make test` runs the whole suite (no marker
    left out), which is what .ci/run calls."""
    first_block = README.split("```bash\n", 1)[1].split("```", 1)[0]
    assert re.search(r"^make up STACK=dev\s", first_block, re.M)
    assert re.search(r"^make test\s", first_block, re.M)
    makefile = (ROOT / "Makefile").read_text()

    def recipe(target: str) -> str:
        match = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.M)
        assert match, target
        return match.group(1)

    assert "pulumi up --stack $(STACK)" in recipe("up")
    test = recipe("test")
    assert "-m pytest" in test and " -m " not in test.split("-m pytest", 1)[1]
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.M)


def test_the_readme_stays_a_users_document():
    lines = README.count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move the detail to docs/"


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", doc.read_text(), flags=re.M | re.S)
    return {slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def relative_links(doc: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", doc.read_text(), flags=re.M | re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_every_relative_link_leads_to_a_file_and_heading_that_exist():
    checked = 0
    for doc in DOCS:
        for target in relative_links(doc):
            path, _, anchor = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            where = f"{doc.relative_to(ROOT)}: {target}"
            assert dest.exists(), where
            if anchor:
                assert dest.suffix == ".md" and anchor in anchors(dest), where
            checked += 1
    assert checked >= 10  # the README links its docs; docs link each other


def test_the_readme_links_every_page_of_docs():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in relative_links(ROOT / "README.md")}
    for page in (ROOT / "docs").glob("*.md"):
        assert page.resolve() in linked, page.name


def test_the_link_checker_sees_a_broken_link_and_a_broken_anchor(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# A title\n\n[x](missing.md) [y](#a-title) [z](#nowhere) `[not](a-link)`\n[w](https://example.org)\n"
    )
    assert relative_links(doc) == ["missing.md", "#a-title", "#nowhere"]
    assert anchors(doc) == {"a-title"}
    assert slug("The policy pack (`policy/`)") == "the-policy-pack-policy"


# A development issue's number means nothing to a reader: say what and why instead.
ISSUE_NUMBER = re.compile(r"\bissues? ?#?\d+", re.I)
SCANNED = (
    "README.md",
    "Makefile",
    "__main__.py",
    "Pulumi.yaml",
    "Pulumi.dev.yaml",
    "pyproject.toml",
    ".ci",
    ".github",
    "docs",
    "examples",
    "components",
    "config",
    "onhost",
    "tools",
    "policy",
    "bench",
    "tests",
)
SKIPPED = {"data", "venv", ".venv", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "node_modules"}


def scanned_files() -> list[Path]:
    files: list[Path] = []
    for name in SCANNED:
        top = ROOT / name
        candidates = [top] if top.is_file() else [p for p in top.rglob("*") if p.is_file()]
        for path in candidates:
            parts = set(path.relative_to(ROOT).parts)
            if parts & SKIPPED or path.suffix in {".pyc", ".sum"} or path == Path(__file__):
                continue
            files.append(path)
    return files


def test_no_issue_numbers_in_the_docs_or_the_products_comments():
    files = scanned_files()
    assert ROOT / "components" / "openstack.py" in files and ROOT / "docs" / "steps.md" in files
    found = []
    for path in files:
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if ISSUE_NUMBER.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_the_issue_number_check_matches_the_ways_they_were_written():
    for text in ("issue 13", "Issue 12 item 6", "issue #4", "issues 10", "(issue13)"):
        assert ISSUE_NUMBER.search(text), text
    for text in ("an issue with 3 calls", "tissue 5x", "the issuer 7"):
        assert not ISSUE_NUMBER.search(text), text
