#!/usr/bin/env python3
"""Checks that ops/prometheus/alerts.yaml only names metrics and labels the
daemon exports (run by `make check-ops`). A renamed metric would otherwise
leave an alert that can never fire. The source of truth is src/metrics.rs,
which writes every series by name; `promtool check rules` (not needed here)
checks the PromQL itself.
"""

import pathlib
import re
import shutil
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
# Series Prometheus itself adds to every target.
BUILTIN = {"up"}
# Labels Prometheus adds to every series.
TARGET_LABELS = {"job", "instance"}


def fail(msg):
    print(f"check-alerts: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    try:
        import yaml
    except ImportError:
        print("check-alerts: no python3-yaml: skipped")
        return
    metrics_src = (REPO / "src/metrics.rs").read_text()
    exported = set(re.findall(r"\b((?:agent_runtime|process)_[a-z0-9_]+)", metrics_src))

    def labels_of(name):
        """Labels src/metrics.rs writes on `name` (in its `name{{label=\"..."` lines)."""
        found = set()
        for inner in re.findall(re.escape(name) + r"\{\{(.*?)\}\}", metrics_src):
            found |= set(re.findall(r'([a-z_]+)=\\"', inner))
        return found | TARGET_LABELS

    doc = yaml.safe_load((HERE / "prometheus/alerts.yaml").read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    if not rules:
        fail("no rules")
    for rule in rules:
        expr = rule["expr"]
        names = set(re.findall(r"\b([a-z_][a-z0-9_]*)\s*(?:\{|\[|\)|\s|$|==|>|<)", expr))
        series = {n for n in names if n.startswith(("agent_runtime_", "process_"))}
        for n in series:
            base = re.sub(r"_(bucket|sum|count)$", "", n)
            if n not in exported and base not in exported:
                fail(f"{rule['alert']}: {n} is not exported by src/metrics.rs")
        if not series and not names & BUILTIN:
            fail(f"{rule['alert']}: names no metric")
        for name, matcher in re.findall(r"([a-z_][a-z0-9_]*)\{([^}]*)\}", expr):
            allowed = TARGET_LABELS if name in BUILTIN else labels_of(name)
            for label in re.findall(r"([a-z_]+)\s*(?:=~|!=|!~|=)", matcher):
                if label not in allowed:
                    fail(f"{rule['alert']}: {name} has no label {label} (src/metrics.rs writes {sorted(allowed)})")
    print(f"check-alerts: {len(rules)} alert rules name only exported metrics and labels")
    if shutil.which("promtool"):
        r = subprocess.run(["promtool", "check", "rules", str(HERE / "prometheus/alerts.yaml")], capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"promtool check rules: {r.stdout}{r.stderr}")
        print("check-alerts: promtool check rules: ok")


if __name__ == "__main__":
    main()
