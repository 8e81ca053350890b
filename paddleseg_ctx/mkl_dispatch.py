"""MKL's vector code path on AMD CPUs.

Paddle's CPU builds bundle MKL 2019 (``libmklml_intel.so``), which picks its
generic SSE code on any CPU that is not Intel's: on an AMD EPYC (Zen 5)
Paddle's float32 matmul then runs at about 35 GFLOP/s and its convolutions
at 25, against 185 and 100 with the AVX-512 code.  MKL 2019 still reads the
``MKL_DEBUG_CPU_TYPE`` variable that forces a code path, when it first runs a
routine.  ``import paddleseg_ctx`` sets it on AMD CPUs that support the path,
before Paddle runs anything; on Intel CPUs MKL's own choice is already right
and nothing is set.

A value the user has set (even empty, which keeps MKL's own choice) is never
changed.  Outputs differ from the generic path's only by float32 rounding.
"""
import os

VARIABLE = 'MKL_DEBUG_CPU_TYPE'

# MKL 2019's code paths and the instruction sets each needs, best first:
# 7 is AVX-512 (Skylake-SP), 5 is AVX2.  6 is the Xeon Phi path: its
# instructions (AVX-512 ER) do not exist on AMD CPUs, and MKL's vector math
# dies there with SIGILL, so it is never used.
CODE_PATHS = (
    ('7', ('avx512f', 'avx512cd', 'avx512bw', 'avx512dq', 'avx512vl')),
    ('5', ('avx2', 'fma')),
)


def read_cpuinfo(text):
    """(vendor, set of flags) of the first processor in /proc/cpuinfo text."""
    vendor, flags = None, None
    for line in text.splitlines():
        key, _, value = line.partition(':')
        key = key.strip()
        if key == 'vendor_id' and vendor is None:
            vendor = value.strip()
        elif key == 'flags' and flags is None:
            flags = set(value.split())
    return vendor, flags or set()


def code_path_for(cpuinfo_text):
    """The MKL_DEBUG_CPU_TYPE value for the CPU described, or None when MKL's
    own choice should stand (Intel, unknown, or no AVX2)."""
    vendor, flags = read_cpuinfo(cpuinfo_text)
    if vendor != 'AuthenticAMD':
        return None
    for value, needs in CODE_PATHS:
        if flags.issuperset(needs):
            return value
    return None


def use_vector_code_path(environ=os.environ, cpuinfo='/proc/cpuinfo'):
    """Set MKL_DEBUG_CPU_TYPE in ``environ`` for this CPU unless it is set;
    returns the value in effect (None: MKL chooses)."""
    if VARIABLE in environ:
        return environ[VARIABLE]
    try:
        with open(cpuinfo) as f:
            value = code_path_for(f.read())
    except OSError:  # not Linux: leave MKL alone
        return None
    if value is not None:
        environ[VARIABLE] = value
    return value
