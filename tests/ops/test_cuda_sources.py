"""The CUDA sources compile on a machine without a GPU, so that syntax and template errors surface before the GPU
build: every csrc/cuda/*.cu with `nvcc -c` (setup.py's flags plus those torch's CUDAExtension adds, e.g.
__CUDA_NO_BFLOAT16_CONVERSIONS__), and every csrc/cuda/*.cpp binding with `g++ -fsyntax-only` against this
torch's headers. Warnings from our own files fail the test too. All compilers run at once in a thread pool.

Skipped, saying why, only when a tool is missing (nvcc, a C++ compiler, CUDA or torch's c10/cuda headers).
The CPU torch wheel lacks one generated header, c10/cuda/impl/cuda_cmake_macros.h; a one-line stand-in is
written to a temporary include directory searched after torch's own.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CUDA_SOURCES = ROOT / "csrc" / "cuda"
CU_FILES = sorted(CUDA_SOURCES.glob("*.cu"))
CPP_FILES = sorted(CUDA_SOURCES.glob("*.cpp"))
# torch.utils.cpp_extension.COMMON_NVCC_FLAGS (torch 2.13), used if that private name moves.
TORCH_NVCC_FLAGS = ["-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
                    "-D__CUDA_NO_BFLOAT16_CONVERSIONS__", "-D__CUDA_NO_HALF2_OPERATORS__", "--expt-relaxed-constexpr"]


def nvcc_command(nvcc: str, source: Path, out_dir: Path) -> list[str]:
    from torch.utils import cpp_extension

    arch = os.environ.get("LIT_ALIGN_NVCC_FLAGS", "-gencode=arch=compute_90,code=sm_90").split()  # as setup.py
    flags = getattr(cpp_extension, "COMMON_NVCC_FLAGS", TORCH_NVCC_FLAGS)
    return [nvcc, *flags, "-O3", "-std=c++17", "--use_fast_math", "-lineinfo", *arch, "--compiler-options", "-fPIC",
            "-c", str(source), "-o", str(out_dir / f"{source.stem}.o")]


def cuda_include_dir(nvcc: str | None) -> Path | None:
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    if nvcc is not None:
        candidates.append(str(Path(nvcc).resolve().parent.parent))
    candidates += sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for home in filter(None, candidates):
        if (Path(home) / "include" / "cuda_runtime_api.h").is_file():
            return Path(home) / "include"
    return None


def gxx_command(cxx: str, source: Path, include_dirs: list[Path]) -> list[str]:
    return [cxx, "-fsyntax-only", "-std=c++17", "-Wall", "-Wextra",
            *[f"-isystem{d}" for d in include_dirs], str(source)]


def binding_include_dirs(nvcc: str | None, tmp: Path) -> tuple[list[Path], str | None]:
    """(include directories for the bindings, or [] with the reason they cannot be checked here)."""
    from torch.utils.cpp_extension import include_paths

    torch_dirs = [Path(p) for p in include_paths()]
    if not (torch_dirs[0] / "c10" / "cuda" / "CUDAGuard.h").is_file():
        return [], "this torch ships no c10/cuda headers"
    cuda = cuda_include_dir(nvcc)
    if cuda is None:
        return [], "no CUDA include directory (set CUDA_HOME)"
    stub = tmp / "stub_include"
    macros = stub / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h"
    macros.parent.mkdir(parents=True, exist_ok=True)
    macros.write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
    return [*torch_dirs, cuda, stub], None  # the stand-in is searched last: a real header wins


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """{source: CompletedProcess, or a str saying why it was not compiled}, all compilers run concurrently."""
    tmp = tmp_path_factory.mktemp("cuda_sources")
    nvcc = shutil.which("nvcc")
    cxx = shutil.which("g++") or shutil.which("c++")
    jobs: dict[Path, list[str]] = {}
    results: dict[Path, object] = {}
    for source in CU_FILES:
        if nvcc is None:
            results[source] = "nvcc not found: install the CUDA toolkit to compile the CUDA sources"
        else:
            jobs[source] = nvcc_command(nvcc, source, tmp)
    include_dirs, reason = binding_include_dirs(nvcc, tmp)
    for source in CPP_FILES:
        if cxx is None or reason is not None:
            results[source] = f"cannot syntax-check the bindings: {reason or 'no C++ compiler'}"
        else:
            jobs[source] = gxx_command(cxx, source, include_dirs)
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results.update(zip(jobs, pool.map(run, jobs.values()), strict=True))
    return results


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)


def check(compiled, source: Path) -> None:
    result = compiled[source]
    if isinstance(result, str):
        pytest.skip(result)
    assert result.returncode == 0, f"{' '.join(result.args)}\nfailed:\n{result.stderr[-6000:]}"
    ours = [line for line in result.stderr.splitlines() if "warning" in line and "csrc/cuda/" in line]
    assert not ours, "warnings in our sources:\n" + "\n".join(ours)


@pytest.mark.parametrize("source", CU_FILES, ids=lambda p: p.name)
def test_cuda_kernels_compile(compiled, source):
    check(compiled, source)


@pytest.mark.parametrize("source", CPP_FILES, ids=lambda p: p.name)
def test_cuda_bindings_syntax(compiled, source):
    check(compiled, source)


def test_sources_present():
    assert CU_FILES and CPP_FILES, f"no CUDA sources under {CUDA_SOURCES}"
