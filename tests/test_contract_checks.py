"""The contract checks of CI: scripts/buf_breaking.sh checks every commit that changed protos/ against its parent
(so a break in an early commit of a submission is caught even when later commits are additive), honours reviewed
exceptions, refuses a shallow clone, and checks uncommitted changes; protos/ builds alone for other languages, the
vendored google/rpc files unchanged."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

REPO = Path(__file__).resolve().parents[1]
BUF = REPO / "tools" / "node_modules" / ".bin" / "buf"
SCRIPT = REPO / "scripts" / "buf_breaking.sh"

needs_buf = pytest.mark.skipif(not BUF.exists(), reason="buf is not installed: make tools/node_modules/.bin/buf")

PROTO = """syntax = "proto3";

package demo.v1;

message Thing {
  string name = 1;
%s}
"""


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _commit(repo: Path, fields: str, message: str) -> str:
    path = repo / "protos" / "demo" / "v1" / "demo.proto"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PROTO % fields)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / ".ci").mkdir()
    shutil.copy(SCRIPT, repo / "scripts" / "buf_breaking.sh")
    shutil.copy(REPO / "buf.yaml", repo / "buf.yaml")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "test@example.com")
    _git(repo, "config", "user.name", "test")
    _commit(repo, "  int32 size = 2;\n", "first")
    return repo


def _check(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "scripts/buf_breaking.sh"],
        cwd=repo,
        env={"PATH": "/usr/bin:/bin", "BUF": str(BUF), "HOME": str(repo)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@needs_buf
def test_additive_history_passes(repo: Path) -> None:
    _commit(repo, "  int32 size = 2;\n  string colour = 3;\n", "add a field")
    done = _check(repo)
    assert done.returncode == 0, done.stderr
    assert "no breaking change in 1 change(s) to protos/ since the first commit" in done.stdout


@needs_buf
def test_a_break_in_an_earlier_commit_fails_although_the_last_commit_is_additive(repo: Path) -> None:
    breaking = _commit(repo, "", "remove size")  # a deleted field
    _commit(repo, "  string colour = 3;\n", "add colour")  # additive against its parent
    done = _check(repo)
    assert done.returncode == 1
    assert f"commit {breaking[:7]} remove size breaks the contract of its parent" in done.stderr, done.stderr
    assert "add colour breaks" not in done.stderr
    assert ".ci/buf-breaking-exceptions" in done.stderr

    (repo / ".ci" / "buf-breaking-exceptions").write_text(f"# reviewed\n{breaking} demo.v1: size was never used\n")
    done = _check(repo)
    assert done.returncode == 0, done.stderr
    assert "remove size: not checked, listed in .ci/buf-breaking-exceptions: demo.v1: size was never used" in (
        done.stdout
    )


@needs_buf
def test_uncommitted_changes_are_checked_against_head(repo: Path) -> None:
    path = repo / "protos" / "demo" / "v1" / "demo.proto"
    path.write_text(PROTO % "  int64 size = 2;\n")  # retyped
    done = _check(repo)
    assert done.returncode == 1
    assert "the uncommitted changes to protos/ break the contract of HEAD" in done.stderr


@needs_buf
def test_a_shallow_clone_fails_saying_so(repo: Path, tmp_path: Path) -> None:
    _commit(repo, "  int32 size = 2;\n  string colour = 3;\n", "add a field")
    clone = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{repo}", str(clone)], check=True)
    done = _check(clone)
    assert done.returncode == 1
    assert "this clone is shallow" in done.stderr and "git fetch --unshallow" in done.stderr


@needs_buf
def test_the_project_history_has_no_unexcepted_break() -> None:
    if _git(REPO, "rev-parse", "--is-shallow-repository") == "true":
        pytest.skip("this checkout is shallow")
    done = subprocess.run(["bash", str(SCRIPT)], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_protos_build_alone_with_the_vendored_google_rpc_files(tmp_path: Path) -> None:
    """protoc with -I protos (and the well-known types every protoc has) builds every file, google/rpc included:
    what a client of another language needs to decode ErrorInfo / BadRequest / RetryInfo."""
    protos = REPO / "protos"
    files = sorted(str(p.relative_to(protos)) for p in protos.rglob("*.proto"))
    assert {"google/rpc/status.proto", "google/rpc/error_details.proto", "google/rpc/code.proto"} <= set(files)
    out = tmp_path / "all.binpb"
    done = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", str(protos), f"--descriptor_set_out={out}", *files],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    descriptors = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    names = {f"{file.package}.{message.name}" for file in descriptors.file for message in file.message_type}
    assert {"google.rpc.Status", "google.rpc.ErrorInfo", "google.rpc.BadRequest", "google.rpc.RetryInfo"} <= names


def test_the_google_rpc_protos_are_googleapis_files_unchanged() -> None:
    """The versions googleapis-common-protos (pinned) ships, byte for byte, license header included."""
    import google.rpc

    installed = Path(google.rpc.__path__[0])
    for name in ("status.proto", "error_details.proto", "code.proto"):
        vendored = (REPO / "protos" / "google" / "rpc" / name).read_text()
        assert vendored == (installed / name).read_text(), name
        assert vendored.startswith("// Copyright") and "Apache License, Version 2.0" in vendored


def _commit_files(
    repo: Path, message: str, *, remove: tuple[str, ...] = (), write: dict[str, str] | None = None
) -> str:
    for name in remove:
        _git(repo, "rm", "-q", "-r", name)
    for name, text in (write or {}).items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


@needs_buf
@pytest.mark.parametrize(
    "loosened",
    [
        "version: v2\nmodules:\n  - path: protos\nbreaking:\n  use: [FILE]\n  ignore: [protos/demo]\n",
        "version: v2\nmodules:\n  - path: protos\nbreaking:\n  use: [FILE]\n  except: [FIELD_NO_DELETE]\n",
        "version: v2\nmodules:\n  - path: protos/demo/v1/other\n",
    ],
)
def test_a_commit_cannot_loosen_the_rules_it_is_checked_by(repo: Path, loosened: str) -> None:
    """The rules come from the script, not from the buf.yaml of the commit under check."""
    breaking = _commit_files(
        repo, "remove size, loosen buf.yaml", write={"buf.yaml": loosened, "protos/demo/v1/demo.proto": PROTO % ""}
    )
    done = _check(repo)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"commit {breaking[:7]} remove size, loosen buf.yaml breaks the contract" in done.stderr, done.stderr


@needs_buf
def test_a_break_made_while_buf_yaml_is_gone_fails(repo: Path) -> None:
    """Removing buf.yaml in one commit and restoring it in the next does not take the break between out of the
    check (the base commit lacking buf.yaml is no reason to skip)."""
    breaking = _commit_files(
        repo, "remove size and buf.yaml", remove=("buf.yaml",), write={"protos/demo/v1/demo.proto": PROTO % ""}
    )
    _commit_files(repo, "restore buf.yaml", write={"buf.yaml": (REPO / "buf.yaml").read_text()})
    done = _check(repo)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"commit {breaking[:7]} remove size and buf.yaml breaks the contract" in done.stderr, done.stderr


@needs_buf
def test_deleting_the_protos_fails(repo: Path) -> None:
    gone = _commit_files(repo, "remove the protos", remove=("protos",))
    done = _check(repo)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"commit {gone[:7]} remove the protos breaks the contract" in done.stderr, done.stderr


@needs_buf
def test_an_exception_needs_the_full_commit_id_and_a_reason(repo: Path) -> None:
    breaking = _commit(repo, "", "remove size")
    for line in (f"{breaking}\n", f"{breaking} \n", f"{breaking[:12]} an abbreviated id\n", f"#{breaking} x\n"):
        (repo / ".ci" / "buf-breaking-exceptions").write_text(line)
        done = _check(repo)
        assert done.returncode == 1, (line, done.stdout + done.stderr)
