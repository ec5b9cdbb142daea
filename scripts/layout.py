#!/usr/bin/env python3
"""Prints the library's layout, one line per file: its path, its length in
lines and the first sentence of its opening comment (what the file owns).
docs/development.md's "Layout" list is this output."""
import re
import subprocess
import sys

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
    # lone name such as "small_alloc: ...").
    for match in re.finditer(r"(?<!e\.g)(?<!i\.e)([.:])(\s|$)", text):
        before = text[: match.start()]
        if before.count("(") > before.count(")"):
            continue  # inside a parenthesis
        if match.group(1) == "." or " " in before:
            return before
    return text


def main():
    files = subprocess.run(["git", "ls-files", *LAYERS], capture_output=True, text=True,
                           check=True).stdout.split()
    for path in sorted(f for f in files if f.endswith((".hpp", ".cpp", ".hpp.in")) and "/tests/" not in f):
        with open(path, encoding="utf-8") as f:
            length = sum(1 for _ in f)
        print(f"{path}  [{length}]  {first_sentence(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
