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

Also the one reader of /proc/cpuinfo (:func:`cpu_info`), for the code that
names the machine it measured (``--backend auto``, scripts/benchmark.py).
Imports nothing but the standard library.
"""
import collections
import os
import platform

VARIABLE = 'MKL_DEBUG_CPU_TYPE'

# MKL 2019's code paths and the instruction sets each needs, best first:
# 7 is AVX-512 (Skylake-SP), 5 is AVX2.  6 is the Xeon Phi path: its
# instructions (AVX-512 ER) do not exist on AMD CPUs, and MKL's vector math
# dies there with SIGILL, so it is never used.
CODE_PATHS = (
    ('7', ('avx512f', 'avx512cd', 'avx512bw', 'avx512dq', 'avx512vl')),
    ('5', ('avx2', 'fma')),
)


CpuInfo = collections.namedtuple('CpuInfo', 'vendor model flags')


def read_cpuinfo(text):
    """:class:`CpuInfo` (vendor, model name, set of flags) of the first
    processor in /proc/cpuinfo text; None for what it does not say."""
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(':')
        fields.setdefault(key.strip(), value.strip())
    return CpuInfo(fields.get('vendor_id'), fields.get('model name'),
                   set(fields.get('flags', '').split()))


def cpu_info(path='/proc/cpuinfo'):
    """:class:`CpuInfo` of this machine; off Linux, the model is what
    ``platform`` says and the flags are empty."""
    try:
        with open(path) as f:
            info = read_cpuinfo(f.read())
    except OSError:
        info = CpuInfo(None, None, set())
    return info._replace(
        model=info.model or platform.processor() or platform.machine())


def code_path_for(cpuinfo_text):
    """The MKL_DEBUG_CPU_TYPE value for the CPU described, or None when MKL's
    own choice should stand (Intel, unknown, or no AVX2)."""
    info = read_cpuinfo(cpuinfo_text)
    if info.vendor != 'AuthenticAMD':
        return None
    for value, needs in CODE_PATHS:
        if info.flags.issuperset(needs):
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
