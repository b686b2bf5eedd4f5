"""Static checks of the Dockerfile and .dockerignore (the image the chart deploys).

No image is built here: the checks read the files, the chart and Cargo's own view
of the locked dependencies (`cargo metadata`, no compilation).
"""
from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess

import pytest

from chartlib import REPO, SERVICES, render

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
BINARIES = sorted(SERVICES)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def stages() -> dict[str, list[tuple[str, str]]]:
    result: dict[str, list] = {}
    name = None
    for word, rest in instructions():
        if word == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            name = m.group(2) or f"stage{len(result)}"
            result[name] = [("FROM", m.group(1))]
        elif name:
            result[name].append((word, rest))
    return result


def global_args() -> dict[str, str]:
    args = {}
    for word, rest in instructions():
        if word == "FROM":
            break
        if word == "ARG":
            key, _, value = rest.partition("=")
            args[key] = value
    return args


def test_build_argument_selects_the_binaries_source():
    args = global_args()
    assert args["BIN_SOURCE"] == "builder"
    st = stages()
    assert list(st) == ["builder", "prebuilt", "bin", "stripped", "runtime"], "the runtime stage is the default target (last)"
    assert st["prebuilt"][0] == ("FROM", "scratch")
    assert st["bin"] == [("FROM", "${BIN_SOURCE}")]
    # The selected binaries, stripped of debug info, are what the runtime stage copies.
    assert ("COPY", "--from=bin /out/ /out/") in st["stripped"]
    assert ("RUN", "strip --strip-debug /out/*") in st["stripped"]
    copies = [rest for word, rest in st["runtime"] if word == "COPY"]
    assert len(copies) == 1 and re.match(r"--from=stripped\b.*\s/out/\s+/usr/local/bin/$", copies[0]), copies


def test_builder_is_pinned_and_builds_the_four_binaries():
    args = global_args()
    m = re.fullmatch(r"(?:docker\.io/library/)?rust:(\d+)\.(\d+)\.(\d+)-bookworm", args["RUST_IMAGE"])
    assert m, f"pinned Rust builder on bookworm, not {args['RUST_IMAGE']}"
    st = stages()
    assert st["builder"][0] == ("FROM", "${RUST_IMAGE}")
    runs = " ".join(rest for word, rest in st["builder"] if word == "RUN")
    assert "libpq-dev" in runs and "libsqlite3-dev" in runs
    assert "--locked" in runs
    for binary in BINARIES:
        assert f"-p {binary}" in runs
        assert f"target/release/{binary}" in runs
    prebuilt = " ".join(rest for word, rest in st["prebuilt"] if word == "COPY")
    assert sorted(re.findall(r"target/release/([\w-]+)", prebuilt)) == BINARIES
    assert prebuilt.endswith(" /out/")


def test_runtime_is_small_and_unprivileged():
    args = global_args()
    assert args["RUNTIME_IMAGE"] in ("debian:bookworm-slim", "docker.io/library/debian:bookworm-slim")
    st = stages()
    runtime = st["runtime"]
    assert runtime[0] == ("FROM", "${RUNTIME_IMAGE}")
    runs = " ".join(rest for word, rest in runtime if word == "RUN")
    for package in ("libpq5", "libsqlite3-0", "ca-certificates"):
        assert package in runs
    assert "--no-install-recommends" in runs and "rm -rf /var/lib/apt/lists/*" in runs
    users = [rest for word, rest in runtime if word == "USER"]
    assert users and re.fullmatch(r"10001(:10001)?", users[-1]), "runs as the numeric non-root user 10001"
    for word, rest in runtime:
        if word in ("CMD", "ENTRYPOINT"):
            assert rest.startswith("["), f"{word} in exec form (no shell at run time)"
            json.loads(rest)


def test_chart_runs_the_binaries_the_image_holds():
    rendered = render()
    commands = sorted(
        d["spec"]["template"]["spec"]["containers"][0]["command"][0] for d in rendered.of_kind("Deployment")
    )
    assert commands == [f"/usr/local/bin/{b}" for b in BINARIES]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def test_rust_builder_is_new_enough_for_the_lock_file():
    builder = _version(global_args()["RUST_IMAGE"].split(":")[-1])
    cargo_toml = (REPO / "Cargo.toml").read_text()
    workspace = re.search(r'^rust-version\s*=\s*"([^"]+)"', cargo_toml, re.M)
    if workspace:
        assert builder >= _version(workspace.group(1)), "older than the workspace's rust-version"
    if not shutil.which("cargo"):
        pytest.skip("cargo is not installed")
    base = ["cargo", "metadata", "--format-version", "1", "--locked", "--filter-platform", "x86_64-unknown-linux-gnu"]
    result = subprocess.run(base + ["--offline"], cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        result = subprocess.run(base, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    meta = json.loads(result.stdout)
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    # Everything the four service binaries compile: normal and build dependencies.
    todo = [pid for pid, p in packages.items() if p["name"] in BINARIES and p["source"] is None]
    assert len(todo) == len(BINARIES)
    seen = set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        for dep in nodes[pid]["deps"]:
            if any(k["kind"] in (None, "build") for k in dep["dep_kinds"]):
                todo.append(dep["pkg"])
    needs = max(
        ((_version(packages[pid]["rust_version"]), packages[pid]["name"]) for pid in seen if packages[pid].get("rust_version")),
        default=((0,), "nothing"),
    )
    assert builder >= needs[0], f"{needs[1]} needs Rust {'.'.join(map(str, needs[0]))}; the builder has {'.'.join(map(str, builder))}"


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents wins."""
    excluded = False
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip("/")
        for candidate in candidates:
            if fnmatch.fnmatchcase(candidate, pat) or (
                pat.startswith("**/") and fnmatch.fnmatchcase(candidate.rsplit("/", 1)[-1], pat[3:])
            ):
                excluded = not negate
                break
    return excluded


def test_dockerignore_keeps_sources_and_release_binaries_only():
    patterns = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert "target" in patterns
    after = patterns[patterns.index("target") + 1:]
    for binary in BINARIES:
        assert f"!target/release/{binary}" in after, "binaries re-included after the line that hides target"
    members = re.search(r"members\s*=\s*\[(.*?)\]", (REPO / "Cargo.toml").read_text(), re.S).group(1)
    kept = ["Cargo.toml", "Cargo.lock", "src/main.rs"] + [
        f"{m}/Cargo.toml" for m in re.findall(r'"([^"]+)"', members)
    ] + [f"target/release/{b}" for b in BINARIES]
    for path in kept:
        assert not dockerignored(path, patterns), f"{path} must be in the build context"
    for path in (
        ".git/HEAD", "target/debug/user-service", "target/release/deps/libfoo.rlib",
        "target/release/order-system", "node_modules/newman/package.json", ".venv/bin/python",
        "data/users.db", "tests/artifacts/log.txt", "service-kit/src/__pycache__/x.pyc",
    ):
        assert dockerignored(path, patterns), f"{path} must stay out of the build context"
