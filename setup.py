"""Builds lit_align._C: the C++ CPU ops always, the CUDA ops too when this torch has CUDA and nvcc is found.

CUDA is gated on torch.version.cuda and CUDA_HOME (not on a visible GPU), so a GPU-less build box with a
CUDA torch still compiles the CUDA kernels. Build: `pip install --no-build-isolation -e .` (MAX_JOBS=2).
"""
import glob
import os
import platform

import torch
from setuptools import setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension


def cpu_flags() -> list[str]:
    """-O3 + OpenMP (at::parallel_for) + the widest at::vec ISA this machine has (the build is local)."""
    flags = ["-O3", "-std=c++17", "-fopenmp", "-DNDEBUG"]
    if os.environ.get("LIT_ALIGN_PORTABLE") == "1" or platform.machine() != "x86_64":
        return flags
    cpu = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    if " avx512f " in cpu and " avx512bw " in cpu and " avx512vl " in cpu and " avx512dq " in cpu:
        return flags + ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-DCPU_CAPABILITY_AVX512",
                        "-DCPU_CAPABILITY=AVX512"]
    if " avx2 " in cpu and " fma " in cpu:
        return flags + ["-mavx2", "-mfma", "-mf16c", "-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2"]
    return flags


def extension():
    sources = ["csrc/ops.cpp", *sorted(glob.glob("csrc/cpu/*.cpp"))]
    with_cuda = torch.version.cuda is not None and CUDA_HOME is not None and os.environ.get("LIT_ALIGN_NO_CUDA") != "1"
    if not with_cuda:
        return CppExtension("lit_align._C", sources, extra_compile_args={"cxx": cpu_flags()},
                            extra_link_args=["-fopenmp"])
    sources += sorted(glob.glob("csrc/cuda/*.cpp")) + sorted(glob.glob("csrc/cuda/*.cu"))
    nvcc = ["-O3", "-std=c++17", "--use_fast_math", "-lineinfo",
            *os.environ.get("LIT_ALIGN_NVCC_FLAGS", "-gencode=arch=compute_90,code=sm_90").split()]
    return CUDAExtension("lit_align._C", sources, extra_compile_args={"cxx": cpu_flags(), "nvcc": nvcc},
                         extra_link_args=["-fopenmp"])


setup(ext_modules=[extension()], cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)})
