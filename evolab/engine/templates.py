"""Template versions: the evolving prompts a run can use, and where each came from.

The files shipped in evolab/prompts/<lang>/<operation>.txt are the roots. A tuned template (evolab/audit/tuning.py)
or one a person saved becomes a stored version: operation, language, a name, its hash (`Template.version`,
the value nodes record in `template_version`), its text, and its parent version, so every version can be
diffed against the one it came from. A run names the versions it uses in `RunConfig.templates`
("<language>/<operation>" -> hash; `--template OP=VERSION` on the CLI); other operations use the shipped file.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

from evolab.engine.operations import LANGUAGES, Template, get_operation, operation_names
from evolab.schema import RunConfig
from evolab.store import Store

SHIPPED = "shipped"
MIN_PREFIX = 4  # a hash prefix shorter than this matches too much to be meant


@dataclass(frozen=True)
class TemplateVersion:
    operation: str
    language: str
    version: str  # Template.version: a hash of the text
    name: str
    text: str
    parent_version: str | None = None
    note: str | None = None
    created_at: float | None = None
    shipped: bool = False  # the file evolab ships today

    @property
    def key(self) -> str:
        """The RunConfig.templates key and the nodes' `template` value, e.g. "en/constraints"."""
        return f"{self.language}/{self.operation}"

    def template(self) -> Template:
        return Template(name=self.key, text=self.text)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.version})"


def shipped_version(operation: str, language: str) -> TemplateVersion:
    t = get_operation(operation).template(language)  # a plugin's operation reads its own folder
    return TemplateVersion(operation, t.name.partition("/")[0], t.version, SHIPPED, t.text, None,
                           "the template file shipped with evolab", None, True)


def _from_row(row: dict) -> TemplateVersion:
    return TemplateVersion(row["operation"], row["language"], row["hash"], row["name"], row["text"],
                           row["parent_version"], row["note"], row["created_at"])


def versions(store: Store, operation: str, language: str) -> list[TemplateVersion]:
    """The shipped template first, then the stored versions oldest first. A stored copy of a shipped text (saved
    as a tuned version's parent) is shown once; a shipped text the file no longer has keeps its stored row."""
    root = shipped_version(operation, language)
    stored = [_from_row(r) for r in store.template_versions(operation, root.language)]
    return [root] + [v for v in stored if v.version != root.version]


def all_versions(store: Store) -> list[TemplateVersion]:
    return [v for op in operation_names() for lang in LANGUAGES for v in versions(store, op, lang)]


def find_version(store: Store, operation: str, language: str, version: str) -> TemplateVersion | None:
    """A version by its full hash: stored, shipped, or a tuning candidate not adopted (yet)."""
    for v in versions(store, operation, language):
        if v.version == version:
            return v
    text = store.candidate_template_text(operation, language, version)
    if text is not None:
        return TemplateVersion(operation, language, version, f"candidate {version}", text)
    return None


def resolve(store: Store, operation: str, ref: str, language: str | None = None) -> list[TemplateVersion]:
    """The versions `ref` (a name, or a hash prefix of at least 4 characters) names for an operation: one per
    language at most. Raises ValueError saying what exists when nothing or too much matches."""
    get_operation(operation)
    ref = ref.strip()
    languages = [language] if language else list(LANGUAGES)
    pool = [v for lang in languages for v in versions(store, operation, lang)]
    hits = [v for v in pool if v.name == ref]
    if not hits and len(ref) >= MIN_PREFIX:
        hits = [v for v in pool if v.version.startswith(ref.lower())]
    if not hits:
        known = ", ".join(f"{v.language}:{v.label}" for v in pool)
        raise ValueError(f"No {operation} template version {ref!r}; there are: {known}. `python -m evolab tune "
                         "--list` shows them all.")
    by_language: dict[str, list[TemplateVersion]] = {}
    for v in hits:
        by_language.setdefault(v.language, []).append(v)
    for lang, found in by_language.items():
        if len(found) > 1:
            raise ValueError(f"{ref!r} matches several {lang}/{operation} versions "
                             f"({', '.join(v.label for v in found)}); give more of the hash.")
    return [found[0] for found in by_language.values()]


def parse_template_options(store: Store, items: list[str]) -> dict[str, str]:
    """`OP=VERSION` items (repeatable) -> RunConfig.templates. Raises ValueError naming the bad item."""
    chosen: dict[str, str] = {}
    for item in items:
        operation, sep, ref = item.partition("=")
        if not sep or not operation.strip() or not ref.strip():
            raise ValueError(f"--template {item!r}: use OP=VERSION, e.g. constraints=my-tuned-1 or "
                             "constraints=3f2a9c")
        try:
            found = resolve(store, operation.strip(), ref)
        except ValueError as e:
            raise ValueError(f"--template {item}: {e}") from None
        for v in found:
            chosen[v.key] = v.version
    return chosen


def run_templates(store: Store, config: RunConfig) -> dict[str, Template]:
    """The Template objects a run's config names, by "<language>/<operation>". Raises ValueError when the
    store no longer has a version the run was created with."""
    out: dict[str, Template] = {}
    for key, version in (config.templates or {}).items():
        language, _, operation = key.partition("/")
        found = find_version(store, operation, language, version)
        if found is None:
            raise ValueError(f"The run uses template version {version} for {key}, which {store.path} does not "
                             "have.")
        out[key] = found.template()
    return out


def check_placeholders(current: Template, text: str) -> str | None:
    """Why `text` cannot replace `current` (None when it can): it must keep every {placeholder} the engine fills
    in, and add none the engine does not know."""
    if not text.strip():
        return "empty template"
    new = Template(current.name, text)
    lost, added = sorted(current.fields - new.fields), sorted(new.fields - current.fields)
    problems = []
    if lost:
        problems.append("drops " + ", ".join("{" + f + "}" for f in lost))
    if added:
        problems.append("adds " + ", ".join("{" + f + "}" for f in added) + " (the engine fills only "
                        + ", ".join("{" + f + "}" for f in sorted(current.fields)) + ")")
    if not problems and new.version == current.version:
        return "identical to the current template"
    return "; ".join(problems) or None


def save_version(store: Store, operation: str, language: str, text: str, name: str, parent_version: str,
                 note: str | None = None) -> TemplateVersion:
    """Store `text` as a new version of (operation, language) with its parent. When the parent is the shipped
    file, a copy of it is stored too, so the diff against the parent survives a later edit of the file."""
    name = name.strip()
    if not name:
        raise ValueError("Give the version a name.")
    root = shipped_version(operation, language)
    parent = find_version(store, operation, language, parent_version)
    if parent is None:
        raise ValueError(f"No {language}/{operation} version {parent_version} to derive from.")
    problem = check_placeholders(parent.template(), text)
    if problem:
        raise ValueError(f"Not saved: the new template {problem}.")
    if parent.shipped and parent.version == root.version:
        store.add_template_version(operation, language, root.version, f"{SHIPPED} {root.version}", root.text, None,
                                   root.note)
    version = Template(f"{language}/{operation}", text).version
    store.add_template_version(operation, language, version, name, text, parent.version, note)
    return find_version(store, operation, language, version)  # type: ignore[return-value]


def unified_diff(old: str, new: str, old_label: str = "current", new_label: str = "candidate") -> str:
    """A unified diff of two template texts, line by line ('' when equal)."""
    return "\n".join(difflib.unified_diff(old.splitlines(), new.splitlines(), fromfile=old_label,
                                          tofile=new_label, n=2, lineterm=""))


def diff_against_parent(store: Store, version: TemplateVersion) -> str | None:
    """The diff of a version against its parent (None for a root, or a parent the store no longer has)."""
    if not version.parent_version:
        return None
    parent = find_version(store, version.operation, version.language, version.parent_version)
    if parent is None:
        return None
    return unified_diff(parent.text, version.text, parent.label, version.label)
