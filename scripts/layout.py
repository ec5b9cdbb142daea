#!/usr/bin/env python3
"""The library's layout, one line per file: its path and the first sentence
of its opening comment (what the file owns).

  scripts/layout.py                 prints it
  scripts/layout.py --lengths       with each file's length in lines
  scripts/layout.py --check DOC     fails unless DOC's "Layout" list is the output

docs/development.md's "Layout" list is this output; the test docs/layout
checks that it is current (a file added, moved or renamed, or an opening
line changed, without the list)."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("context", "diagnostics", "executor", "propagation", "log")


def first_sentence(path):
    words = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("//"):
                break
            text = line[2:].strip()
            if not text:
                break
            words.append(text)
    text = " ".join(words)
    # Up to the first full stop that ends a sentence (not "e.g." or "1.5"),
    # or the first colon after a phrase ("The capture reserve: ..."; not a
    # lone name such as "small_alloc: ..."), outside parentheses.
    for match in re.finditer(r"(?<!e\.g)(?<!i\.e)([.:])(\s|$)", text):
        before = text[: match.start()]
        if before.count("(") > before.count(")"):
            continue
        if match.group(1) == "." or " " in before:
            return before
    return text


def layout(lengths):
    files = subprocess.run(["git", "ls-files", *LAYERS], capture_output=True, text=True,
                           check=True, cwd=ROOT).stdout.split()
    lines = []
    for name in sorted(f for f in files if f.endswith((".hpp", ".cpp", ".hpp.in"))):
        path = ROOT / name
        length = ""
        if lengths:
            with open(path, encoding="utf-8") as f:
                length = f"  [{sum(1 for _ in f)}]"
        lines.append(f"{name}{length}  {first_sentence(path)}")
    return lines


def documented(doc):
    text = Path(doc).read_text(encoding="utf-8")
    section = text[text.index("## Layout"):]
    start = section.index("```\n") + 4
    return section[start:section.index("```\n", start)].splitlines()


def main(argv):
    if len(argv) == 3 and argv[1] == "--check":
        expected, found = layout(lengths=False), documented(argv[2])
        if expected == found:
            return 0
        for line in sorted(set(expected) - set(found)):
            print(f"missing from {argv[2]}: {line}")
        for line in sorted(set(found) - set(expected)):
            print(f"stale in {argv[2]}: {line}")
        print("regenerate the list with scripts/layout.py")
        return 1
    print("\n".join(layout(lengths="--lengths" in argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
