"""The guides hold together: every relative link and #anchor in README.md and docs/ resolves,
and the configuration guide's table names every variable the code reads, each with a default
column, and nothing the code does not read. No worker is started."""

import re
import unicodedata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    kept = "".join(ch for ch in heading.strip().lower()
                   if ch.isalnum() or ch in "-_ " or unicodedata.category(ch).startswith("L"))
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, seen, in_code = set(), {}, False
    for line in page.read_text().split("\n"):
        if line.startswith("```"):
            in_code = not in_code
        match = None if in_code else re.match(r"^#{1,6} (.*)$", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            found.add(base if count == 0 else f"{base}-{count}")
            seen[base] = count + 1
    return found


def links(page: Path) -> list[str]:
    text, in_code, kept = page.read_text(), False, []
    for line in text.split("\n"):
        if line.startswith("```"):
            in_code = not in_code
        if not in_code:
            kept.append(line)
    return [a or b for a, b in LINK.findall("\n".join(kept))]


def test_every_relative_link_and_anchor_resolves():
    broken = []
    for page in PAGES:
        for target in links(page):
            if re.match(r"^[a-z]+:", target):
                continue  # https:, mailto:: not ours to check offline
            path, _, anchor = target.partition("#")
            destination = (page.parent / path).resolve() if path else page
            if not destination.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []
    assert len(PAGES) >= 10, "the guides are in docs/"


def variables_the_code_reads() -> set[str]:
    """Every NAME_LIKE_THIS string in the crate's code outside its tests (Worker bindings
    excepted): the worker reads its settings by these names and has no other such strings."""
    names = set()
    for source in (REPO / "src").rglob("*.rs"):
        if source.name == "tests.rs":
            continue
        code = source.read_text().split("#[cfg(test)]")[0]
        for line in code.split("\n"):
            if "BINDING" in line:
                continue
            names.update(re.findall(r'"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)"', line))
    return names


def documented_variables() -> dict[str, str]:
    """The configuration guide's table: each name in its first column, with its default."""
    table = {}
    for line in (REPO / "docs" / "configuration.md").read_text().split("\n"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0].startswith("`"):
            for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0]):
                table[name] = cells[2]
    return table


def test_the_configuration_guide_names_every_variable_the_code_reads_and_no_other():
    read, documented = variables_the_code_reads(), documented_variables()
    assert len(read) > 30
    assert sorted(read - set(documented)) == [], "read by the code, missing from the guide"
    assert sorted(set(documented) - read) == [], "in the guide, never read by the code"
    assert all(default for default in documented.values()), "each row has a default column"


def test_the_readme_is_a_front_page():
    lines = (REPO / "README.md").read_text().count("\n")
    assert lines <= 250, f"README.md has {lines} lines: the details belong in docs/"


# Each documented default and the constant the code falls back to.
DEFAULTS = {
    "WECHAT_API_BASE": "DEFAULT_API_BASE", "WECOM_API_BASE": "DEFAULT_WECOM_API_BASE",
    "REFRESH_MARGIN_SECS": "DEFAULT_MARGIN_SECS",
    "MIN_REFRESH_INTERVAL_SECS": "DEFAULT_MIN_INTERVAL_SECS",
    "KV_MAX_AGE_SECS": "DEFAULT_KV_MAX_AGE_SECS",
    "UPSTREAM_TIMEOUT_MS": "DEFAULT_UPSTREAM_TIMEOUT_MS",
    "STABLE_FORCE_SPACING_SECS": "DEFAULT_FORCE_SPACING_SECS",
    "STABLE_FORCE_DAILY_LIMIT": "DEFAULT_FORCE_DAILY_LIMIT",
    "CRON_BATCH": "DEFAULT_CRON_BATCH", "ALERT_AFTER_SECS": "DEFAULT_AFTER_SECS",
    "ALERT_REPEAT_SECS": "DEFAULT_REPEAT_SECS", "GATEWAY_PATH_PREFIXES": "DEFAULT_PATH_PREFIXES",
    "QUOTA_LOW_PERCENT": "DEFAULT_LOW_PERCENT",
}


def constant(name: str) -> str:
    """A `const` of src/policy as written: a number without its `_`, or a string's text."""
    for source in (REPO / "src" / "policy").glob("*.rs"):
        match = re.search(rf"const {name}: [^=]+= (.+?);", source.read_text(), re.S)
        if match:
            value = match.group(1).strip()
            if value.startswith('"'):
                return re.sub(r"\\\n\s*", "", value[1:-1])
            return value.replace("_", "")
    raise AssertionError(f"no constant {name}")


def test_each_documented_default_is_the_codes():
    documented = documented_variables()
    for variable, name in DEFAULTS.items():
        assert f"`{constant(name)}`" in documented[variable], (variable, constant(name))
