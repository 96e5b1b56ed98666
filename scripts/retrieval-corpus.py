#!/usr/bin/env python3
"""Build a known-item retrieval corpus from the local cargo registry cache.

Every crate unpacked under the cargo registry's source cache
(``$CARGO_HOME/registry/src/*/``, ``~/.cargo`` when ``CARGO_HOME`` is unset)
has a README and a one-line ``description`` in its ``Cargo.toml``, written by
the same author but independently. The description is the query; the README
is the one document it should find. ``benches/quality.rs``
(``BENCH_ONLY=quality``) measures how often each search method ranks it
first, in the top five, and its mean reciprocal rank.

Output (``--out DIR``):

* ``DIR/workspace/<crate>/README.md``: a byte-for-byte copy of each kept
  crate's README (whatever its original name or format);
* ``DIR/queries.tsv``: header ``crate<TAB>path<TAB>description``, one row per
  kept crate sorted by crate name, ``path`` being ``<crate>/README.md``
  (relative to ``DIR/workspace``), the description with its whitespace
  collapsed to single spaces.

What is kept: a crate directory with a parsable ``Cargo.toml`` whose
``[package]`` has a string ``name``, ``version`` and ``description``, and a
README (``[package] readme`` if it is a string naming an existing file, else
``README.md``, ``README``, ``readme.md`` or ``Readme.md`` in the crate root).
Of several versions of one crate only the newest is kept. Then, walking the
crates by name, a crate is skipped when its README is under 200 bytes, when
the same README bytes (SHA-256) were already taken by another crate (crate
families such as ``windows-*`` share one README: the right answer would be
ambiguous), when its lowercased description equals one already taken, or when
its name is one the runtime reserves inside a workspace (``logs``, ``tasks``,
``inbox``: never indexed there). A summary goes to stderr. The output depends
only on the registry's contents.

Python 3.11+, standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

README_NAMES = ("README.md", "README", "readme.md", "Readme.md")
MIN_README_BYTES = 200
# Top-level workspace folders the runtime keeps for itself (never indexed).
RESERVED = ("logs", "tasks", "inbox")


@dataclass
class Crate:
    name: str
    version: str
    description: str
    readme: Path
    source: Path


def version_key(version: str) -> tuple:
    """Orders versions: release parts numerically, a pre-release before its release.

    ``1.10.0`` > ``1.9.3``; ``1.0.0-alpha.2`` < ``1.0.0-alpha.10`` < ``1.0.0``;
    build metadata (``+...``) is ignored.
    """

    def parts(s: str) -> tuple:
        # Numbers sort before words at the same position, as in semver.
        return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.\-]", s) if p != "")

    core = version.split("+", 1)[0]
    release, _, pre = core.partition("-")
    # No pre-release sorts after any pre-release of the same release.
    return (parts(release), (1,) if not pre else (0, parts(pre)))


def find_readme(crate_dir: Path, package: dict) -> Path | None:
    field = package.get("readme")
    if isinstance(field, str):
        p = crate_dir / field
        if p.is_file():
            return p
    for name in README_NAMES:
        p = crate_dir / name
        if p.is_file():
            return p
    return None


def default_registries() -> list[Path]:
    home = Path(os.environ.get("CARGO_HOME") or Path.home() / ".cargo")
    return sorted(p for p in (home / "registry" / "src").glob("*/") if p.is_dir())


def scan(registries: list[Path], stats: dict[str, int]) -> dict[str, Crate]:
    """The newest eligible version of every crate, by name."""
    newest: dict[str, Crate] = {}
    for reg in registries:
        for crate_dir in sorted(p for p in reg.iterdir() if p.is_dir()):
            stats["crate directories seen"] += 1
            manifest = crate_dir / "Cargo.toml"
            try:
                with manifest.open("rb") as f:
                    package = tomllib.load(f).get("package")
            except FileNotFoundError:
                stats["skipped: no Cargo.toml"] += 1
                continue
            except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError):
                stats["skipped: unparsable Cargo.toml"] += 1
                continue
            if not isinstance(package, dict):
                stats["skipped: no [package]"] += 1
                continue
            name, version, desc = package.get("name"), package.get("version"), package.get("description")
            if not isinstance(name, str) or not isinstance(version, str):
                stats["skipped: no name/version"] += 1
                continue
            desc = " ".join(desc.split()) if isinstance(desc, str) else ""
            if not desc:
                stats["skipped: no description"] += 1
                continue
            readme = find_readme(crate_dir, package)
            if readme is None:
                stats["skipped: no README"] += 1
                continue
            cand = Crate(name, version, desc, readme, crate_dir)
            old = newest.get(name)
            if old is None:
                newest[name] = cand
                continue
            stats["skipped: older version"] += 1
            # Same version in two registries: the first (sorted) stays.
            if version_key(version) > version_key(old.version):
                newest[name] = cand
    return newest


def main() -> int:
    ap = argparse.ArgumentParser(
        description="Build a known-item search corpus (README = document, Cargo.toml description = query) "
        "from the local cargo registry source cache, for `BENCH_ONLY=quality cargo bench --bench bench`.",
        epilog="Example: python3 scripts/retrieval-corpus.py --out /tmp/corpus && "
        "BENCH_QUALITY_CORPUS=/tmp/corpus BENCH_ONLY=quality cargo bench --bench bench",
    )
    ap.add_argument(
        "--registry",
        action="append",
        type=Path,
        metavar="DIR",
        help="a registry source directory holding <name>-<version>/ crate folders (repeatable; "
        "default: every $CARGO_HOME/registry/src/*/, CARGO_HOME defaulting to ~/.cargo)",
    )
    ap.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="DIR",
        help="output directory: DIR/workspace/<crate>/README.md and DIR/queries.tsv "
        "(a corpus written there before is replaced)",
    )
    args = ap.parse_args()

    registries = sorted(set(args.registry)) if args.registry else default_registries()
    missing = [r for r in registries if not r.is_dir()]
    if missing or not registries:
        print(f"no registry source directory: {', '.join(map(str, missing)) or 'none found'}", file=sys.stderr)
        return 2

    out: Path = args.out
    ws = out / "workspace"
    tsv = out / "queries.tsv"
    if ws.exists():
        if not tsv.is_file():
            print(f"{ws} exists and is not a corpus written by this script; refusing to replace it", file=sys.stderr)
            return 2
        shutil.rmtree(ws)

    stats: dict[str, int] = {
        k: 0
        for k in (
            "crate directories seen",
            "skipped: no Cargo.toml",
            "skipped: unparsable Cargo.toml",
            "skipped: no [package]",
            "skipped: no name/version",
            "skipped: no description",
            "skipped: no README",
            "skipped: older version",
            "skipped: README under 200 bytes",
            "skipped: README shared with a crate already taken",
            "skipped: description equal to one already taken",
            "skipped: reserved workspace folder name",
        )
    }
    newest = scan(registries, stats)

    taken_readmes: set[str] = set()
    taken_descs: set[str] = set()
    rows: list[tuple[str, str, str]] = []
    total_bytes = 0
    ws.mkdir(parents=True, exist_ok=True)
    for name in sorted(newest):
        c = newest[name]
        data = c.readme.read_bytes()
        if len(data) < MIN_README_BYTES:
            stats["skipped: README under 200 bytes"] += 1
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in taken_readmes:
            stats["skipped: README shared with a crate already taken"] += 1
            continue
        if c.description.lower() in taken_descs:
            stats["skipped: description equal to one already taken"] += 1
            continue
        if name in RESERVED:
            stats["skipped: reserved workspace folder name"] += 1
            continue
        taken_readmes.add(digest)
        taken_descs.add(c.description.lower())
        (ws / name).mkdir()
        (ws / name / "README.md").write_bytes(data)
        total_bytes += len(data)
        rows.append((name, f"{name}/README.md", c.description.replace("\t", " ")))

    out.mkdir(parents=True, exist_ok=True)
    with tsv.open("w", encoding="utf-8", newline="\n") as f:
        f.write("crate\tpath\tdescription\n")
        for row in rows:
            f.write("\t".join(row) + "\n")

    print(f"registries: {', '.join(map(str, registries))}", file=sys.stderr)
    for k, v in stats.items():
        print(f"{k}: {v}", file=sys.stderr)
        if k == "skipped: older version":
            print(f"crates with a description and a README (newest version of each): {len(newest)}", file=sys.stderr)
    print(f"crates kept: {len(rows)} ({total_bytes / 1e6:.2f} MB of README) -> {tsv}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
