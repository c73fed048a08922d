#!/usr/bin/env python3
"""readme.py - every command the README shows, run as printed, so the README cannot drift.

What counts as a command:
  - in a fenced block, a line starting with "$ " (the rest of the line runs in bash, pipes
    included); in a ```console block the lines up to the next "$ " or the fence are the output
    it must print (stdout), where a line "..." stands for any number of lines and a line ending
    in " ..." for any line that starts with what comes before it (abridged examples, timings);
  - outside fences, an inline `lrcnn-sim --net ...` or `lrcnn-validate --net ...` span (a complete
    command: it names a network) must exit 0.
Each command runs in a scratch directory of its own with the built binaries first on PATH.

Usage: LRCNN_BIN=build/bin python3 tests/readme.py [README.md]
Deliberately not here: `make run` and `make test` themselves (.ci/run runs those).
"""
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.abspath(os.environ.get("LRCNN_BIN", os.path.join(ROOT, "build", "bin")))
TIMEOUT_S = 300
INLINE = re.compile(r"`((?:lrcnn-sim|lrcnn-validate) --net [^`]*)`")


def commands(text):
    """Yields (line number, command, expected output lines or None)."""
    fence = None
    cur = None
    for no, line in enumerate(text.split("\n"), 1):
        if line.startswith("```"):
            if fence is None:
                fence = line[3:].strip()
            else:
                if cur:
                    yield cur
                fence, cur = None, None
            continue
        if fence is not None:
            if line.startswith("$ "):
                if cur:
                    yield cur
                cur = (no, line[2:], [] if fence == "console" else None)
            elif cur and cur[2] is not None:
                cur[2].append(line)
            continue
        for m in INLINE.finditer(line):
            yield (no, m.group(1), None)


def matches(expected, actual):
    """True when actual lines fit expected with "..." wildcards (see the docstring)."""
    def fit(i, j):
        if i == len(expected):
            return j == len(actual)
        e = expected[i]
        if e == "...":
            return any(fit(i + 1, k) for k in range(j, len(actual) + 1))
        if j == len(actual):
            return False
        a = actual[j].rstrip()
        if e.endswith(" ..."):
            ok = a.startswith(e[:-4].rstrip())
        else:
            ok = a == e.rstrip()
        return ok and fit(i + 1, j + 1)
    return fit(0, 0)


def first_difference(expected, actual):
    for k in range(max(len(expected), len(actual))):
        e = expected[k] if k < len(expected) else "<nothing>"
        a = actual[k] if k < len(actual) else "<nothing>"
        if e.rstrip() != a.rstrip() and not (e.endswith(" ...") and a.startswith(e[:-4])):
            return "line %d: README %r, printed %r" % (k + 1, e, a)
    return "the README's '...' lines do not fit"


def run(cmd):
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    with tempfile.TemporaryDirectory(prefix="lrcnn-readme.") as scratch:
        try:
            p = subprocess.run(["bash", "-c", cmd], cwd=scratch, env=env, capture_output=True,
                               text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return None, "", "timed out after %d s" % TIMEOUT_S
    return p.returncode, p.stdout, p.stderr


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "README.md")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if not os.access(os.path.join(BIN, "lrcnn-sim"), os.X_OK):
        print("FAIL  no lrcnn-sim in %s (set LRCNN_BIN)" % BIN)
        return 1
    found = list(commands(text))
    shown = {cmd for _, cmd, expected in found if expected is not None}
    passed = failed = 0
    for no, cmd, expected in found:
        if expected is None and cmd in shown:
            continue  # an inline mention of an example that runs with its output
        rc, out, err = run(cmd)
        name = "README.md:%d: %s" % (no, cmd)
        why = None
        if rc != 0:
            why = "exit %s: %s" % (rc, (err.strip().split("\n") or [""])[-1][:200])
        elif expected is not None:
            while expected and expected[-1] == "":
                expected.pop()
            actual = out.rstrip("\n").split("\n") if out else []
            if not matches(expected, actual):
                why = first_difference(expected, actual)
        if why:
            print("FAIL  %s: %s" % (name, why))
            failed += 1
        else:
            print("ok    %s" % name)
            passed += 1
    if passed + failed == 0:
        print("FAIL  no commands found in %s" % path)
        return 1
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
