// hashpivot fused market kernels: one thread per path, the time loop inside.
//
// Per path and period: Philox4x32-10 draws, correlated shocks, every factor of
// kernels/market.py (same formulas, fp32 arithmetic), per-site mining margins, and
// accumulation. Layout chosen for the machine (issue 13):
//
// - Parameters live in constant memory as float (`hp_cf`), int (`hp_ci`, `hp_ce`) and, where
//   a threshold must match NumPy's draw for draw, double (`hp_cd`): every thread of a warp
//   reads the same slot (period t, site s, region r), a broadcast.
// - No dynamically indexed local array: per-thread state whose size is known only at run time
//   (power factors, hashrate lag rings, normals, facility balances, per-plan accumulators,
//   tenant default periods) lives in dynamic shared memory, one column per thread (element k
//   of thread i at [k * blockDim + i]: no bank conflicts); fixed-size arrays (Philox words) are
//   indexed by unrolled loops only.
// - Per-site statistics (hp_simulate): each warp stages 32 paths x 32 columns in shared memory
//   and lane c sums column c over the warp's paths in lane order into the warp's own row of
//   per-warp partial sums in global memory (no atomics, no shuffles); the rows are reduced in
//   a second pass on the host side in a fixed order, so the sums are deterministic.
// - hp_evaluate evaluates every plan on each market path in one pass: the market (factors,
//   margins, tenant defaults) is simulated once per path and period, the operating cash flow
//   of each plan taken from it; then each plan's financing recursion runs on the stored flows
//   (global scratch written and read by the same thread).
//
// The file compiles under NVRTC (CuPy RawModule) and, with HP_HOST_EMULATION defined, as plain
// C++ on the CPU (one thread per block, warp of size one): tests/test_cuda.py builds it with
// g++ and checks it against the NumPy path bit for bit (RNG) and to fp32 accuracy (stats).
// Shared memory is reinterpreted (doubles, floats, shorts; the financing pass's doubles over
// the market pass's floats): the host build uses -fno-strict-aliasing.

#ifdef HP_HOST_EMULATION
#include <math.h>
#define __global__
#define __device__
#define __constant__
#define HP_INLINE static inline
#define HP_LAUNCH_BOUNDS(threads, blocks)
#define HP_WARP 1
#define HP_UNROLL
#define HP_NO_UNROLL
HP_INLINE unsigned int hp_umulhi(unsigned int a, unsigned int b) {
    return (unsigned int)(((unsigned long long)a * (unsigned long long)b) >> 32);
}
HP_INLINE double hp_warp_sum(double v) { return v; }
HP_INLINE void hp_syncwarp(void) {}
HP_INLINE void hp_atomic_inc(unsigned int* p) { *p += 1u; }
// "shared memory" of the one emulated thread
#define HP_HOST_SMEM_DOUBLES 16384
double hp_host_smem[HP_HOST_SMEM_DOUBLES];
#define HP_SMEM hp_host_smem
#else
#define HP_INLINE __device__ __forceinline__
#define HP_LAUNCH_BOUNDS(threads, blocks) __launch_bounds__(threads, blocks)
#define HP_WARP 32
#define HP_UNROLL _Pragma("unroll")
#define HP_NO_UNROLL _Pragma("unroll 1")
HP_INLINE unsigned int hp_umulhi(unsigned int a, unsigned int b) { return __umulhi(a, b); }
HP_INLINE double hp_warp_sum(double v) {
    HP_UNROLL
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}
HP_INLINE void hp_syncwarp(void) { __syncwarp(); }
// Thread and block index read by a volatile instruction: never kept live across a phase.
HP_INLINE int hp_tid(void) {
    int v;
    asm volatile("mov.u32 %0, %%tid.x;" : "=r"(v));
    return v;
}
HP_INLINE int hp_ctaid(void) {
    int v;
    asm volatile("mov.u32 %0, %%ctaid.x;" : "=r"(v));
    return v;
}
HP_INLINE void hp_atomic_inc(unsigned int* p) { atomicAdd(p, 1u); }
extern __shared__ double hp_smem_dyn[];
#define HP_SMEM hp_smem_dyn
#endif

// Threads per block of the path kernels (kernels/cuda.py: THREADS_PER_BLOCK).
#define HP_THREADS 128
#define HP_MAX_JUMPS 24
#define HP_JUMP_STREAM 64u
#define HP_DEFAULT_STREAM 128u
#define HP_SQRT_2PI 2.5066282746310002f
#define HP_TWO_PI 6.283185307179586
// Columns one warp stages at a time (hp_simulate), padded row length of the staging tile.
#define HP_TILE 32
#define HP_TILE_ROW 33

// ---- constant memory (sizes: kernels/cuda.py CF_SIZE, CI_SIZE, CD_SIZE, CE_SIZE) ----
#define HP_CF_SIZE 12288
#define HP_CI_SIZE 2048
#define HP_CD_SIZE 128
#define HP_CE_SIZE 64
__constant__ float hp_cf[HP_CF_SIZE];   // market scalars (P_*) then arrays at O_* offsets
__constant__ int hp_ci[HP_CI_SIZE];     // market sizes, offsets, site regions, feature groups
__constant__ double hp_cd[HP_CD_SIZE];  // factor shifts of the sums, Poisson CDF of the jumps
__constant__ int hp_ce[HP_CE_SIZE];     // evaluation sizes and offsets (J_*, Q_*, M_*)

// ---- scalar slots of hp_cf (see kernels/cuda.py: P_SLOTS) ----
enum {
    P_LN_P0, P_BTC_DRIFT, P_BTC_VOL, P_JUMP_LAMBDA, P_JUMP_MEAN, P_JUMP_STD, P_BTC_MEAN_RET,
    P_LN_H0, P_HASH_DRIFT, P_HASH_VOL, P_HASH_BETA, P_HALVING_STEP, P_HASH_DOWN, P_HASH_UP,
    P_HASH_GAP0,
    P_LN_LEASE0, P_LEASE_DRIFT_DT, P_LEASE_A, P_LEASE_SD,
    P_OCC_M, P_OCC_U0, P_OCC_A, P_OCC_SD,
    P_LN_GPU0, P_GPU_DRIFT, P_GPU_VOL, P_HIST_WIDTH, P_MARGIN_LN_LO, P_MARGIN_LN_HI, P_N_SCALARS
};
// ---- slots of hp_ci (kernels/cuda.py: I_SIZES, I_OFFSETS, I_TAIL) ----
enum {
    I_T, I_R, I_S, I_LAG, I_NF, I_NN, I_F, I_NB, I_W, I_NGROUPS, I_NFEAT_COLS,
    O_HPCONST, O_HALV, O_LEASEVAR, O_PTHETA, O_PX0, O_PA, O_PSD, O_PINTRA, O_CHOL,
    O_SLNREV, O_SHU, O_SSHARE, O_SFIXED, O_SRESALE, O_HISTLO, O_GROUPW, O_LNBE,
    D_SHIFT, D_POISSON,
    M_XPOW, M_PAST, M_GAP, M_Z, M_FLOATS,
    I_SITE_REGION, I_GROUPS, I_N_SLOTS
};

HP_INLINE void philox4x32_10(unsigned int c[4], unsigned int k0, unsigned int k1) {
    HP_UNROLL
    for (int r = 0; r < 10; ++r) {
        if (r) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
        unsigned int hi0 = hp_umulhi(0xD2511F53u, c[0]), lo0 = 0xD2511F53u * c[0];
        unsigned int hi1 = hp_umulhi(0xCD9E8D57u, c[2]), lo1 = 0xCD9E8D57u * c[2];
        unsigned int n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0; c[1] = lo1; c[2] = n2; c[3] = lo0;
    }
}

HP_INLINE double hp_uniform(unsigned int x) { return ((double)x + 0.5) * 2.3283064365386963e-10; }

// Per-thread columns of shared memory as 32-bit indices into HP_SMEM (shared addressing, no
// 64-bit pointers held in registers): element k of this thread's doubles at
// HP_SMEM[d + k * n], of its floats at ((float*)HP_SMEM)[f + k * n], of its shorts likewise.
typedef struct {
    int d, f, h;  // this thread's first double, float and short
    int n;        // stride: threads per block
} hp_mem;

#define HP_D(m, k) (HP_SMEM[(m).d + (k) * (m).n])
#define HP_F(m, k) (((float*)HP_SMEM)[(m).f + (k) * (m).n])
#define HP_H(m, k) (((short*)HP_SMEM)[(m).h + (k) * (m).n])

// Thread `tid` of `nthr`: `nd` doubles, then `nf` floats, then shorts per thread.
HP_INLINE hp_mem hp_mem_at(int tid, int nthr, int nd, int nf) {
    hp_mem m;
    m.n = nthr;
    m.d = tid;
    m.f = 2 * nd * nthr + tid;
    m.h = 2 * (2 * nd * nthr + nf * nthr) + tid;
    return m;
}

// Normals of one period: Box-Muller on (x0, x1) and (x2, x3) of each Philox stream, as
// kernels/philox.py; into the thread's z region.
HP_INLINE void hp_normals(hp_mem m, int count, unsigned long long path, unsigned int t,
                          unsigned int k0, unsigned int k1) {
    const int zb = hp_ci[M_Z];
    for (int s = 0; 4 * s < count; ++s) {
        unsigned int c[4] = {(unsigned int)(path & 0xFFFFFFFFull), (unsigned int)(path >> 32), t,
                             (unsigned int)s};
        philox4x32_10(c, k0, k1);
        HP_UNROLL
        for (int pair = 0; pair < 2; ++pair) {
            int i = 4 * s + 2 * pair;
            if (i < count) {
                float r = sqrtf(-2.0f * logf((float)hp_uniform(c[2 * pair])));
                float th = (float)(HP_TWO_PI * hp_uniform(c[2 * pair + 1]));
                HP_F(m, zb + i) = r * cosf(th);
                if (i + 1 < count) HP_F(m, zb + i + 1) = r * sinf(th);
            }
        }
    }
}

// E[(R - X)+], X lognormal of mean p and log-sd sig > 0: A&S 26.2.17 as kernels/market.py.
HP_INLINE float hp_tail(float d, float dens) {
    float k = 1.0f / (1.0f + 0.2316419f * fabsf(d));
    float poly = k * (0.319381530f + k * (-0.356563782f + k * (1.781477937f +
                 k * (-1.821255978f + k * 1.330274429f))));
    float tail = dens * poly;                 // 1 - Phi(|d|)
    return d >= 0.0f ? tail : 1.0f - tail;    // Phi(-d)
}

HP_INLINE float hp_put(float rev, float p, float ln_ratio, float sig) {
    if (sig <= 0.0f) return fmaxf(rev - p, 0.0f);
    float d1 = (ln_ratio + 0.5f * sig * sig) / sig;
    float d2 = d1 - sig;
    float pdf1 = expf(-0.5f * d1 * d1) / HP_SQRT_2PI;
    float pdf2 = pdf1 * p / rev;
    float put = rev * hp_tail(d2, pdf2) - p * hp_tail(d1, pdf1);
    return fmaxf(put, 0.0f);
}

// State of one path between periods (registers); power, lag rings and normals in hp_mem.
typedef struct {
    float lnp, lnh, ylease, uocc, lng;
} hp_state;

HP_INLINE void hp_init(hp_mem m, hp_state* st) {
    st->lnp = hp_cf[P_LN_P0];
    st->lnh = hp_cf[P_LN_H0];
    st->ylease = 0.0f;
    st->uocc = hp_cf[P_OCC_U0];
    st->lng = hp_cf[P_LN_GPU0];
    const int R = hp_ci[I_R], xb = hp_ci[M_XPOW];
    for (int r = 0; r < R; ++r) HP_F(m, xb + r) = hp_cf[hp_ci[O_PX0] + r];
}

// Advance one path by period t: every factor of kernels/market.py (iter_periods).
// Out: lnhp, lnlease; log power per region in the xpow region; the state holds the rest.
HP_INLINE void hp_step(hp_mem m, unsigned int k0, unsigned int k1, unsigned long long upath,
                       int t, hp_state* st, float* lnhp, float* lnlease) {
    const int R = hp_ci[I_R], lag = hp_ci[I_LAG], nf = hp_ci[I_NF], nn = hp_ci[I_NN];
    const int oc = hp_ci[O_CHOL], zb = hp_ci[M_Z], xb = hp_ci[M_XPOW];
    hp_normals(m, nn, upath, (unsigned int)t, k0, k1);
    // the five global shocks eps[0..4] = (chol z)[0..4], in registers (rows of a triangle)
    float e[5];
    HP_UNROLL
    for (int i = 0; i < 5; ++i) {
        float acc = 0.0f;
        HP_UNROLL
        for (int j = 0; j <= i; ++j) acc += hp_cf[oc + i * nf + j] * HP_F(m, zb + j);
        e[i] = acc;
    }
    float jumps = 0.0f;
    if (hp_cf[P_JUMP_LAMBDA] > 0.0f) {
        unsigned int c[4] = {(unsigned int)(upath & 0xFFFFFFFFull), (unsigned int)(upath >> 32),
                             (unsigned int)t, HP_JUMP_STREAM};
        philox4x32_10(c, k0, k1);
        double u = hp_uniform(c[0]);
        float count = 0.0f;
        const int po = hp_ci[D_POISSON];
        HP_UNROLL
        for (int k = 0; k < HP_MAX_JUMPS; ++k) count += (u > hp_cd[po + k]) ? 1.0f : 0.0f;
        jumps = count * hp_cf[P_JUMP_MEAN] + sqrtf(count) * hp_cf[P_JUMP_STD] * HP_F(m, zb + nf);
    }
    float ret = hp_cf[P_BTC_DRIFT] + hp_cf[P_BTC_VOL] * e[0] + jumps;
    st->lnp += ret;
    const int ring = lag + 1, pb = hp_ci[M_PAST], gb = hp_ci[M_GAP];
    HP_F(m, pb + t % ring) = ret - hp_cf[P_BTC_MEAN_RET];
    float lagged = (t >= lag) ? HP_F(m, pb + (t - lag) % ring) : 0.0f;
    // breakeven feedback (kernels/market.py docstring): fast down, lagged up
    float lnc = hp_cf[hp_ci[O_HPCONST] + t];
    float xh = st->lnh + hp_cf[P_HASH_DRIFT];
    float g = lnc + st->lnp - xh - hp_cf[hp_ci[O_LNBE] + t];
    HP_F(m, gb + t % ring) = g;
    float g_lag = (t >= lag) ? HP_F(m, gb + (t - lag) % ring) : hp_cf[P_HASH_GAP0];
    st->lnh = xh + hp_cf[P_HASH_DOWN] * fminf(g, 0.0f) + hp_cf[P_HASH_UP] * fmaxf(g_lag, 0.0f) +
              hp_cf[P_HASH_VOL] * e[1] + hp_cf[P_HASH_BETA] * lagged +
              (hp_cf[hp_ci[O_HALV] + t] > 0.0f ? hp_cf[P_HALVING_STEP] : 0.0f);
    *lnhp = lnc + st->lnp - st->lnh;
    // power regions: row 5 + r of chol z, used at once
    const int ot = hp_ci[O_PTHETA], oa = hp_ci[O_PA], os = hp_ci[O_PSD];
    for (int r = 0; r < R; ++r) {
        const int i = 5 + r;
        float eps = 0.0f;
        for (int j = 0; j <= i; ++j) eps += hp_cf[oc + i * nf + j] * HP_F(m, zb + j);
        float th = hp_cf[ot + r];
        HP_F(m, xb + r) = th + (HP_F(m, xb + r) - th) * hp_cf[oa + r] + hp_cf[os + r] * eps;
    }
    st->ylease = hp_cf[P_LEASE_A] * st->ylease + hp_cf[P_LEASE_SD] * e[2];
    *lnlease = hp_cf[P_LN_LEASE0] + hp_cf[P_LEASE_DRIFT_DT] * (float)(t + 1) + st->ylease -
               0.5f * hp_cf[hp_ci[O_LEASEVAR] + t];
    float mo = hp_cf[P_OCC_M];
    st->uocc = mo + (st->uocc - mo) * hp_cf[P_OCC_A] + hp_cf[P_OCC_SD] * e[3];
    st->lng += hp_cf[P_GPU_DRIFT] + hp_cf[P_GPU_VOL] * e[4];
}

// Mining margin per MW of site s [$/MW/period] (kernels/market.py: mining_margin): ln
// hashprice and ln power clamped to [P_MARGIN_LN_LO, P_MARGIN_LN_HI] (margin_log_bounds) so
// that no float32 intermediate overflows.
HP_INLINE float hp_margin(hp_mem m, int s, float lnhp) {
    const int r = hp_ci[hp_ci[I_SITE_REGION] + s];
    const float lo = hp_cf[P_MARGIN_LN_LO], hi = hp_cf[P_MARGIN_LN_HI];
    const float lnpow = fminf(fmaxf(HP_F(m, hp_ci[M_XPOW] + r), lo), hi);
    float lnrev = fminf(fmaxf(lnhp, lo), hi) + hp_cf[hp_ci[O_SLNREV] + s];
    float rev = expf(lnrev), p = expf(lnpow);
    float put = hp_put(rev, p, lnpow - lnrev, hp_cf[hp_ci[O_PINTRA] + r]);
    float c = hp_cf[hp_ci[O_SFIXED] + s];
    float fixed = hp_cf[hp_ci[O_SRESALE] + s] > 0.0f ? put + p - c : fmaxf(rev - c, 0.0f);
    float share = hp_cf[hp_ci[O_SSHARE] + s];
    return hp_cf[hp_ci[O_SHU] + s] * (share * put + (1.0f - share) * fixed);
}

// Reported log-factor f: btc, hashrate, hashprice, lease, occupancy, gpu, power per region.
HP_INLINE float hp_log_factor(hp_mem m, const hp_state* st, float lnhp, float lnlease, int f) {
    if (f >= 6) return HP_F(m, hp_ci[M_XPOW] + f - 6);
    return f == 0 ? st->lnp : f == 1 ? st->lnh : f == 2 ? lnhp : f == 3 ? lnlease
                                               : f == 4 ? st->uocc : st->lng;
}

// One warp's tile of columns c0 .. c0+nc: row `lane` staged by every lane, then lane c sums
// column c over the active rows in lane order into the warp's partial row (sum, square sum).
// `shift` (column 0 of the tile) is subtracted in double when `shifted`.
HP_INLINE void hp_reduce_tile(float* stage, int lane, int n_active, int nc, double* prow_sum,
                              double* prow_sq, bool shifted, int shift_at) {
    hp_syncwarp();
    for (int c = lane; c < nc; c += HP_WARP) {
        const double sh = shifted ? hp_cd[shift_at + c] : 0.0;
        double s1 = 0.0, s2 = 0.0;
        for (int r = 0; r < n_active; ++r) {
            double dv = (double)stage[r * HP_TILE_ROW + c] - sh;
            s1 += dv;
            s2 += dv * dv;
        }
        prow_sum[c] += s1;
        prow_sq[c] += s2;
    }
    hp_syncwarp();
}

// One warp's group of paths path0 + gid (gid = group * HP_WARP + lane), the whole horizon:
// statistics for kernels/simulate.py into the warp's partial rows part[t][W].
HP_INLINE void hp_path_group(hp_mem m, float* stage, int lane, unsigned int k0, unsigned int k1,
                             long long path0, long long group, int n_paths, double* part,
                             unsigned int* hist, float* feat, int feat_paths) {
    const int T = hp_ci[I_T], R = hp_ci[I_R], S = hp_ci[I_S];
    const int F = hp_ci[I_F], NB = hp_ci[I_NB], W = hp_ci[I_W];
    const long long gid = group * HP_WARP + lane;
    const bool active = gid < n_paths;
    const long long left = (long long)n_paths - group * HP_WARP;
    const int n_active = left < HP_WARP ? (int)left : HP_WARP;
    const unsigned long long upath = (unsigned long long)(path0 + (active ? gid : 0));
    float* row_feat = (feat && active && gid < feat_paths) ? feat : 0;
    const int ncols = 4 + R;
    const float hist_w = hp_cf[P_HIST_WIDTH];
    float* srow = stage + lane * HP_TILE_ROW;
    hp_state st;
    hp_init(m, &st);
    for (int t = 0; t < T; ++t) {
        float lnhp, lnlease;
        hp_step(m, k0, k1, upath, t, &st, &lnhp, &lnlease);
        double* prow = part + (long long)t * W;
        for (int c0 = 0; c0 < F; c0 += HP_TILE) {
            const int nc = F - c0 < HP_TILE ? F - c0 : HP_TILE;
            for (int c = 0; c < nc; ++c) {
                const int f = c0 + c;
                float lg = hp_log_factor(m, &st, lnhp, lnlease, f);
                srow[c] = (f == 4) ? 1.0f / (1.0f + expf(-lg)) : expf(lg);
                if (active && hist) {
                    int b = (int)floorf((lg - hp_cf[hp_ci[O_HISTLO] + f]) / hist_w);
                    b = b < 0 ? 0 : (b >= NB ? NB - 1 : b);
                    hp_atomic_inc(hist + ((long long)t * F + f) * NB + b);
                }
            }
            hp_reduce_tile(stage, lane, n_active, nc, prow + c0, prow + F + c0, true,
                           hp_ci[D_SHIFT] + c0);
        }
        for (int c0 = 0; c0 < S; c0 += HP_TILE) {
            const int nc = S - c0 < HP_TILE ? S - c0 : HP_TILE;
            for (int c = 0; c < nc; ++c) srow[c] = hp_margin(m, c0 + c, lnhp);
            hp_reduce_tile(stage, lane, n_active, nc, prow + 2 * F + c0, prow + 2 * F + S + c0,
                           false, 0);
        }
        if (row_feat) {
            const int* groups = hp_ci + hp_ci[I_GROUPS];
            float* row = row_feat + (gid * hp_ci[I_NGROUPS] + groups[t]) * ncols;
            float w = hp_cf[hp_ci[O_GROUPW] + t];
            float occ_ln = -log1pf(expf(-st.uocc));
            row[0] += w * lnhp; row[1] += w * st.lnp; row[2] += w * (lnlease + occ_ln);
            row[3] += w * st.lng;
            for (int r = 0; r < R; ++r) row[4 + r] += w * HP_F(m, hp_ci[M_XPOW] + r);
        }
    }
}

// Market statistics of paths path0 .. path0+n_paths (path0 a multiple of 32). Warp w (of
// n_part warps: the grid is n_part * 32 / HP_THREADS blocks) takes the 32-path groups whose
// run-wide index G = path0 / 32 + g has G mod n_part = w, in increasing order, and adds their
// sums to its partial rows part[w][T][W] (kernels/cuda.py reduces them in warp order after the
// last chunk). Each row thus sums the same groups in the same order whatever the chunking:
// the sums are bit-identical for any chunk size that is a multiple of 32.
// Shared memory: hp_ci[M_FLOATS] floats per thread, then a 32 x 33 float tile per warp.
extern "C" __global__ void HP_LAUNCH_BOUNDS(HP_THREADS, 8)
hp_simulate(unsigned int k0, unsigned int k1, long long path0, int n_paths, int n_part,
            double* part, unsigned int* hist, float* feat, int feat_paths) {
    const long long rows = (long long)hp_ci[I_T] * hp_ci[I_W];
    const int nfl = hp_ci[M_FLOATS];
#ifdef HP_HOST_EMULATION
    for (int w = 0; w < n_part; ++w) {
        const int tid = 0, nthr = 1, lane = 0;
#else
    {
        const int tid = threadIdx.x, nthr = blockDim.x, lane = tid & 31;
        const int w = (blockIdx.x * blockDim.x + tid) >> 5;
#endif
        hp_mem m = hp_mem_at(tid, nthr, 0, nfl);
        float* stage = (float*)(HP_SMEM) + nfl * nthr + (tid / HP_WARP) * HP_WARP * HP_TILE_ROW;
        const long long first = ((long long)w - (path0 / HP_WARP) % n_part + n_part) % n_part;
        for (long long g = first; g * HP_WARP < n_paths; g += n_part)
            hp_path_group(m, stage, lane, k0, k1, path0, g, n_paths, part + w * rows, hist,
                          feat, feat_paths);
    }
}

// ---- plan evaluation (kernels/evaluate.py: simulate_plan), one thread per path ----
// Scenario-level evaluation constants in hp_ced: scalars E_* then the arrays at C_* offsets.
enum {
    E_GROWTH, E_MIN_CASH, E_BTC_FLOOR, E_MAX_SALE, E_HELD0, E_CASH0, E_DSCR, E_LEV, E_DISC,
    E_MULT_AI, E_MULT_MIN, E_RACK_REV, E_RACK_POW, E_RACK_OPEX, E_MU_SCALE, E_TOL,
    E_ON_BREACH, E_WAIVER_FEE, E_STEP_UP, E_N_SCALARS
};
// Slots of hp_ce (kernels/cuda.py: J_SLOTS): sizes, offsets into a plan's double array (Q_*),
// offsets into hp_ced (C_*), per-thread shared-memory layout (N_*).
enum {
    J_S, J_T, J_L, J_F, J_PPY, J_GAP, J_R, J_QLEN,
    Q_T, Q_FT, Q_LT, Q_RT, Q_SITE, Q_PLANNED, Q_SALVAGE,
    C_RATES, C_DIL, C_AMORT, C_FEES, C_SIZES, C_HAZARD,
    N_ACC, N_BAL, N_DRAWN, N_EXTRA, N_DOUBLES, N_DEFAULT, J_N_SLOTS
};
// Per-period block of a plan (Q_T + t * K_T + k), per period and facility (Q_FT + (t * F + f)
// * K_FT + k), per period and lease (Q_LT + (t * L + l) * K_LT + k), per site (Q_SITE + s *
// K_SITE + k); kernels/cuda.py: PLAN_T, PLAN_FT, PLAN_LT, PLAN_SITE.
enum { T_FIXEDCOST, T_RACKSUM, T_MARKET, T_ITOPEX, T_PEN, T_SOLD, T_CAPEX, K_T };
enum { FT_DRAWS, FT_REPAY, FT_ALLOWED, FT_WINDOW, K_FT };
enum { LT_LEASE, LT_RENT, K_LT };
enum { SITE_RHO, SITE_CAPEXIT, SITE_ITOPEXMW, SITE_REMCONV, SITE_FIXED, K_SITE };
#define HP_CED_SIZE 256
__constant__ double hp_ced[HP_CED_SIZE];
#define HP_BREACH_ACCELERATE 1
#define HP_BREACH_WAIVER 2
// breach_mask bits (kernels/results.py: PathOutcomes.breach_mask)
#define HP_BIT_DSCR 1
#define HP_BIT_LEVERAGE 2
#define HP_BIT_MIN_CASH 4
#define HP_BIT_FACILITY0 3

// Scratch of one thread (column `col` of `stride` columns): BTC price per period, then
// operating cash flow and scheduled debt service per plan and period, then the terminal parts.
#define HP_SCR(k) scr[(k) * stride]

// Market pass of one path: every period once; per plan the operating cash flow (and its AI
// share, summed per warp), the period's BTC price and the terminal operating value go to the
// scratch.
HP_INLINE void hp_eval_market(hp_mem m, const double* qd, const float* qf, int P,
                              unsigned int k0, unsigned int k1, unsigned long long upath,
                              bool active, double* scr, int stride, double* part_ai,
                              int lane) {
    const int S = hp_ce[J_S], T = hp_ce[J_T], L = hp_ce[J_L], R = hp_ce[J_R];
    const int qlen = hp_ce[J_QLEN], gap = hp_ce[J_GAP];
    const int acc = hp_ce[N_ACC], defb = hp_ce[N_DEFAULT];
    hp_state st;
    hp_init(m, &st);
    HP_NO_UNROLL
    for (int l = 0; l < L; ++l) HP_H(m, defb + l) = (short)T;
    HP_NO_UNROLL
    for (int t = 0; t < T; ++t) {
        float lnhp, lnlease;
        hp_step(m, k0, k1, upath, t, &st, &lnhp, &lnlease);
        HP_SCR(t) = (double)expf(st.lnp);
        // tenant defaults (common to the plans): lease l defaults in t when its lane's uniform
        // is below the hazard
        HP_NO_UNROLL
        for (int b = 0; 4 * b < L; ++b) {
            unsigned int c[4] = {(unsigned int)(upath & 0xFFFFFFFFull), (unsigned int)(upath >> 32),
                                 (unsigned int)t, HP_DEFAULT_STREAM + (unsigned int)b};
            philox4x32_10(c, k0, k1);
            HP_UNROLL
            for (int j = 0; j < 4; ++j) {
                const int l = 4 * b + j;
                if (l < L && HP_H(m, defb + l) == T &&
                    hp_uniform(c[j]) < hp_ced[hp_ce[C_HAZARD] + l])
                    HP_H(m, defb + l) = (short)t;
            }
        }
        // Σ_s margin[s] · ASIC MW[p, s, t] for every plan: margins once, accumulated per plan
        HP_NO_UNROLL
        for (int p = 0; p < P; ++p) HP_D(m, acc + p) = 0.0;
        const float* qft = qf + (long long)t * S;
        HP_NO_UNROLL
        for (int s = 0; s < S; ++s) {
            const double mg = (double)hp_margin(m, s, lnhp);
            HP_NO_UNROLL
            for (int p = 0; p < P; ++p)
                HP_D(m, acc + p) += mg * (double)qft[(long long)p * T * S + s];
        }
        const double mu =
            (double)(expf(lnlease) / (1.0f + expf(-st.uocc))) * hp_ced[E_MU_SCALE];
        const double gpu = (double)expf(st.lng);
        HP_NO_UNROLL
        for (int p = 0; p < P; ++p) {
            const double* q = qd + (long long)p * qlen;
            const double* qt = q + hp_ce[Q_T] + t * K_T;
            const double gross = HP_D(m, acc + p);
            const double mining = gross - qt[T_FIXEDCOST];
            double power = 0.0;
            HP_NO_UNROLL
            for (int r = 0; r < R; ++r)
                power += (double)expf(HP_F(m, hp_ci[M_XPOW] + r)) * q[hp_ce[Q_RT] + t * R + r];
            const double rack_income = (hp_ced[E_RACK_REV] * gpu - hp_ced[E_RACK_OPEX]) *
                                           qt[T_RACKSUM] - hp_ced[E_RACK_POW] * power;
            double lease_income = 0.0;
            HP_NO_UNROLL
            for (int l = 0; l < L; ++l) {
                const int d = HP_H(m, defb + l);
                const double* ql = q + hp_ce[Q_LT] + (t * L + l) * K_LT;
                lease_income += ql[LT_LEASE] * (d > t ? ql[LT_RENT] : 0.0) +
                                (d + gap <= t ? ql[LT_LEASE] * mu : 0.0);
            }
            const double ai_revenue = lease_income + rack_income + mu * qt[T_MARKET];
            const double ai_noi = ai_revenue - qt[T_ITOPEX];
            HP_SCR(T + p * T + t) = mining + ai_noi - qt[T_PEN];
            const double denom = fmax(ai_revenue, 0.0) + fmax(gross, 0.0);
            const double share = denom > 0.0 ? fmax(ai_revenue, 0.0) / denom : 0.0;
            const double ssum = hp_warp_sum(active ? share : 0.0);
            if (lane == 0) part_ai[p * T + t] = ssum;
            if (t == T - 1) {  // terminal operating value, with the option to convert the
                               // convertible MW still mining (kernels/cashflow.py)
                const double ppyd = (double)hp_ce[J_PPY];
                double option = 0.0;
                HP_NO_UNROLL
                for (int s = 0; s < S; ++s) {
                    const double mg = (double)hp_margin(m, s, lnhp);
                    const double* qs = q + hp_ce[Q_SITE] + s * K_SITE;
                    const double ai_v =
                        qs[SITE_RHO] * (hp_ced[E_MULT_AI] * ppyd * (mu - qs[SITE_ITOPEXMW]) -
                                        qs[SITE_CAPEXIT]);
                    const double min_v = hp_ced[E_MULT_MIN] * ppyd * (mg - qs[SITE_FIXED]);
                    option += qs[SITE_REMCONV] * fmax(ai_v - min_v, 0.0);
                }
                HP_SCR(T + 2 * P * T + p) =
                    ppyd * (hp_ced[E_MULT_AI] * ai_noi + hp_ced[E_MULT_MIN] * mining) + option +
                    q[hp_ce[Q_SALVAGE]];
            }
        }
    }
}

// Financing recursion of plan p on the flows of the market pass (kernels/evaluate.py:
// simulate_plan). Facility flags are bit masks; balances, drawn amounts and the rarely
// updated totals in hp_mem.
HP_INLINE void hp_eval_finance(hp_mem m, const double* q, int p, int P, bool active,
                               double* scr, int stride, int i, int n_paths, double* equity,
                               int* default_period, int* breach_mask, double* min_dscr,
                               double* extra_btc_out, double* extra_draw_out, double* part_debt,
                               double* cash_keep, int n_keep, int lane) {
    const int T = hp_ce[J_T], F = hp_ce[J_F], ppy = hp_ce[J_PPY];
    const int bal = hp_ce[N_BAL], drw = hp_ce[N_DRAWN], xb = hp_ce[N_EXTRA];
    const int ocf_at = T + p * T, sched_at = T + P * T + p * T;
    const double* qft = q + hp_ce[Q_FT];
    HP_NO_UNROLL
    for (int f = 0; f < F; ++f) { HP_D(m, bal + f) = 0.0; HP_D(m, drw + f) = 0.0; }
    HP_D(m, xb) = 0.0;             // emergency BTC sold
    HP_D(m, xb + 1) = 0.0;         // emergency draws
    HP_D(m, xb + 2) = 1e308 * 10.0;  // minimum DSCR
    unsigned int open = 0xFFFFFFFFu, used = 0u, waived = 0u;
    int mask = 0, dead_at = T;
    bool alive = true;
    double cash = hp_ced[E_CASH0], held = hp_ced[E_HELD0];
    HP_D(m, xb + 3) = 0.0;  // DIL of kernels/cashflow.py on the path's own balances
    HP_NO_UNROLL
    for (int t = 0; t < T; ++t) {
        const double btc = HP_SCR(t);
        const double* qt = q + hp_ce[Q_T] + t * K_T;
        double service = 0.0, sched = 0.0, inflow = 0.0;
        double dilution = HP_D(m, xb + 3) * hp_ced[E_GROWTH];
        const bool was_alive = alive;
        HP_NO_UNROLL
        for (int f = 0; f < F; ++f) {
            const double* x = qft + (t * F + f) * K_FT;
            const double planned = ((open >> f) & 1u) ? x[FT_DRAWS] : 0.0;
            const double rate =
                hp_ced[hp_ce[C_RATES] + f] + (((waived >> f) & 1u) ? hp_ced[E_STEP_UP] : 0.0);
            const double b = HP_D(m, bal + f);
            const double interest = b * rate;
            dilution += b * hp_ced[hp_ce[C_DIL] + f];
            const double dr = HP_D(m, drw + f) + planned;
            HP_D(m, drw + f) = dr;
            const double principal = dr * x[FT_REPAY];
            HP_D(m, bal + f) = b + planned - principal;
            service += interest + principal;
            sched += interest + principal * hp_ced[hp_ce[C_AMORT] + f];
            inflow += planned * (1.0 - hp_ced[hp_ce[C_FEES] + f]);
        }
        HP_D(m, xb + 3) = dilution;
        HP_SCR(sched_at + t) = sched;
        const double sold = qt[T_SOLD];
        held -= sold;
        cash = cash * hp_ced[E_GROWTH] + HP_SCR(ocf_at + t) + inflow - service - qt[T_CAPEX] +
               btc * sold;
        // recourse: sell BTC above the floor, then draw what is left of open facilities
        if (alive && cash < hp_ced[E_MIN_CASH]) {
            const double room =
                fmax(fmin(held - hp_ced[E_BTC_FLOOR], hp_ced[E_MAX_SALE] - sold), 0.0);
            const double sell = fmin((hp_ced[E_MIN_CASH] - cash) / btc, room);
            held -= sell;
            cash += sell * btc;
            HP_D(m, xb) += sell;
            HP_NO_UNROLL
            for (int f = 0; f < F; ++f) {
                if (qft[(t * F + f) * K_FT + FT_ALLOWED] <= 0.0 || !((open >> f) & 1u) ||
                    cash >= hp_ced[E_MIN_CASH])
                    continue;
                const double fee = hp_ced[hp_ce[C_FEES] + f];
                const double left = fmax(hp_ced[hp_ce[C_SIZES] + f] - HP_D(m, drw + f), 0.0);
                const double take = fmin((hp_ced[E_MIN_CASH] - cash) / (1.0 - fee), left);
                HP_D(m, drw + f) += take;
                HP_D(m, bal + f) += take;
                cash += take * (1.0 - fee);
                HP_D(m, xb + 1) += take;
                if (take > 0.0) used |= 1u << f;
            }
        }
        if (alive && cash < -hp_ced[E_TOL]) { alive = false; dead_at = t; }
        double debt = 0.0;
        HP_NO_UNROLL
        for (int f = 0; f < F; ++f) debt += HP_D(m, bal + f);
        // covenants on trailing years, for the facilities in force
        unsigned int live = 0u;
        if (t >= ppy - 1 && alive) {
            HP_NO_UNROLL
            for (int f = 0; f < F; ++f)
                if (((open >> f) & 1u) && qft[(t * F + f) * K_FT + FT_WINDOW] > 0.0 &&
                    (q[hp_ce[Q_PLANNED] + f] > 0.0 || ((used >> f) & 1u)))
                    live |= 1u << f;
        }
        if (live) {
            const int w = t + 1 < ppy ? t + 1 : ppy;
            double ocf_trail = 0.0, ds_trail = 0.0;
            HP_NO_UNROLL
            for (int k = 0; k < w; ++k) {
                ocf_trail += HP_SCR(ocf_at + t - k);
                ds_trail += HP_SCR(sched_at + t - k);
            }
            const bool dscr_bad = ocf_trail < hp_ced[E_DSCR] * ds_trail - hp_ced[E_TOL];
            const bool lev_bad =
                debt > hp_ced[E_LEV] * ocf_trail * ((double)ppy / w) + hp_ced[E_TOL];
            if (ds_trail > 0.0) HP_D(m, xb + 2) = fmin(HP_D(m, xb + 2), ocf_trail / ds_trail);
            const int rule = (int)hp_ced[E_ON_BREACH];
            if (dscr_bad || lev_bad) {
                mask |= (dscr_bad ? HP_BIT_DSCR : 0) | (lev_bad ? HP_BIT_LEVERAGE : 0) |
                        (int)(live << HP_BIT_FACILITY0);
                if (rule == HP_BREACH_ACCELERATE || rule == HP_BREACH_WAIVER) {
                    HP_NO_UNROLL
                    for (int f = 0; f < F; ++f) {
                        if (!((live >> f) & 1u)) continue;
                        const double b = HP_D(m, bal + f);
                        if (rule == HP_BREACH_ACCELERATE) {  // the balance falls due
                            cash -= b;
                            HP_D(m, bal + f) = 0.0;
                            HP_D(m, drw + f) = 0.0;
                        } else {  // waiver: fee on the balance, rate step-up for the rest
                            cash -= hp_ced[E_WAIVER_FEE] * b;
                        }
                    }
                    if (rule == HP_BREACH_ACCELERATE) open &= ~live;
                    else waived |= live;
                    // pay from treasury BTC above the floor, else default
                    if (cash < hp_ced[E_MIN_CASH]) {
                        const double sell = fmin((hp_ced[E_MIN_CASH] - cash) / btc,
                                                 fmax(held - hp_ced[E_BTC_FLOOR], 0.0));
                        held -= sell;
                        cash += sell * btc;
                        HP_D(m, xb) += sell;
                    }
                    if (cash < -hp_ced[E_TOL]) { alive = false; dead_at = t; }
                    debt = 0.0;
                    HP_NO_UNROLL
                    for (int f = 0; f < F; ++f) debt += HP_D(m, bal + f);
                }
            }
        }
        if (was_alive && cash < hp_ced[E_MIN_CASH] - hp_ced[E_TOL]) mask |= HP_BIT_MIN_CASH;
        if (cash_keep && active && i < n_keep)
            cash_keep[((long long)p * n_keep + i) * T + t] = alive ? cash : 0.0;
        const double dsum = hp_warp_sum(active ? debt : 0.0);
        if (lane == 0) part_debt[p * T + t] = dsum;
    }
    if (!active) return;
    double debt = 0.0;
    HP_NO_UNROLL
    for (int f = 0; f < F; ++f) debt += HP_D(m, bal + f);
    const double terminal = cash + HP_SCR(T - 1) * held + HP_SCR(T + 2 * P * T + p) - debt -
                            HP_D(m, xb + 3);
    const long long o = (long long)p * n_paths + i;
    equity[o] = alive ? terminal * hp_ced[E_DISC] : 0.0;
    default_period[o] = dead_at;
    breach_mask[o] = mask;
    min_dscr[o] = HP_D(m, xb + 2);
    extra_btc_out[o] = HP_D(m, xb);
    extra_draw_out[o] = HP_D(m, xb + 1);
}

// All P plans (double arrays qd[P][qlen], ASIC MW as float qf[P][T][S]) on paths
// path0 .. path0+n_paths, one thread per path: per-plan outputs at [p * n_paths + i]; AI share
// and debt sums per warp w at part_*[(w * P + p) * T + t] (reduced in warp order by
// kernels/cuda.py); cash of the first n_keep paths at cash_keep[(p * n_keep + i) * T + t].
// The scratch has T * (1 + 2P) + P rows of `stride` >= launched threads columns.
// Shared memory per thread: in the market pass hp_ce[N_DOUBLES] doubles (a plan accumulator
// each), hp_ci[M_FLOATS] floats, L shorts; in the financing passes, over the same bytes,
// 2F + 4 doubles (balances, drawn amounts, totals at N_BAL, N_DRAWN, N_EXTRA).
extern "C" __global__ void HP_LAUNCH_BOUNDS(HP_THREADS, 8)
hp_evaluate(const double* qd, const float* qf, int n_plans, unsigned int k0, unsigned int k1,
            long long path0, int n_paths, double* scratch, int stride, double* equity,
            int* default_period, int* breach_mask, double* min_dscr, double* extra_btc,
            double* extra_draw, double* part_ai, double* part_debt, double* cash_keep,
            int n_keep) {
    const int T = hp_ce[J_T], nd = hp_ce[N_DOUBLES], nfl = hp_ci[M_FLOATS];
#ifdef HP_HOST_EMULATION
    for (int gid_ = 0; gid_ < n_paths; ++gid_) {
#define HP_IDS const int tid = 0, nthr = 1, lane = 0, gid = gid_
#else
    {
    // thread indices read afresh in each phase (volatile): nothing but the kernel's parameters
    // stays live from the market pass into the financing passes
#define HP_IDS                                                                    \
    const int tid = hp_tid(), nthr = blockDim.x, lane = tid & 31,                \
              gid = hp_ctaid() * nthr + tid
#endif
        {
            HP_IDS;
            const bool active = gid < n_paths;
            hp_mem m = hp_mem_at(tid, nthr, nd, nfl);
            hp_eval_market(m, qd, qf, n_plans, k0, k1,
                           (unsigned long long)(path0 + (active ? gid : 0)), active,
                           scratch + gid, stride,
                           part_ai + (long long)(gid / HP_WARP) * n_plans * T, lane);
        }
        HP_NO_UNROLL
        for (int p = 0; p < n_plans; ++p) {
            HP_IDS;
            hp_mem m = hp_mem_at(tid, nthr, nd, nfl);
            hp_eval_finance(m, qd + (long long)p * hp_ce[J_QLEN], p, n_plans, gid < n_paths,
                            scratch + gid, stride, gid, n_paths, equity, default_period,
                            breach_mask, min_dscr, extra_btc, extra_draw,
                            part_debt + (long long)(gid / HP_WARP) * n_plans * T, cash_keep,
                            n_keep, lane);
        }
#undef HP_IDS
    }
}

// Philox alone, for the bit-exactness test against kernels/philox.py.
extern "C" __global__ void hp_philox(const unsigned int* ctr, unsigned int k0, unsigned int k1,
                                     unsigned int* out, int n) {
#ifdef HP_HOST_EMULATION
    for (int i = 0; i < n; ++i) {
#else
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
#endif
        unsigned int c[4] = {ctr[4 * i], ctr[4 * i + 1], ctr[4 * i + 2], ctr[4 * i + 3]};
        philox4x32_10(c, k0, k1);
        HP_UNROLL
        for (int j = 0; j < 4; ++j) out[4 * i + j] = c[j];
    }
}
