/* The float32 fused-multiply-add peak of one core: twelve independent FMA
 * chains on the widest vectors the compiler targets (-march=native), so
 * neither latency nor memory limits it.  Prints the ISA and GFLOP/s, best
 * of 10 runs of about 0.2 s (other tenants of a virtual machine lower some).
 * scripts/benchmark.py compiles and runs it; by hand:
 *     cc -O2 -march=native scripts/fma_peak.c -o fma_peak && ./fma_peak   */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

#if defined(__AVX512F__)
typedef __m512 vec;
#define WIDTH 16
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define ISA "avx512"
#elif defined(__FMA__)
typedef __m256 vec;
#define WIDTH 8
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define ISA "avx2"
#else
#error "needs FMA (x86-64 with AVX2/FMA or AVX-512)"
#endif

#define CHAINS 12

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
    vec acc[CHAINS];
    const vec scale = SET1(0.999999f), shift = SET1(1e-7f);
    const long iterations = 100000000L;
    double best = 0;
    for (int i = 0; i < CHAINS; i++) acc[i] = SET1((float)i);
    for (int run = 0; run < 10; run++) {
        double start = seconds();
        for (long k = 0; k < iterations; k++)
#pragma GCC unroll 12  /* keeps every chain in a register */
            for (int i = 0; i < CHAINS; i++)
                acc[i] = FMA(acc[i], scale, shift);
        double gflops = 2.0 * WIDTH * CHAINS * iterations
                        / (seconds() - start) / 1e9;
        if (gflops > best) best = gflops;
    }
    float sum = 0;  /* use the result, so the loop is not removed */
    for (int i = 0; i < CHAINS; i++) {
        float lanes[WIDTH];
        __builtin_memcpy(lanes, &acc[i], sizeof lanes);
        for (int j = 0; j < WIDTH; j++) sum += lanes[j];
    }
    printf("%s %.3f %g\n", ISA, best, sum);
    return 0;
}
