// hashpivot fused market kernel: one thread per path, the time loop inside.
//
// Per path and period: Philox4x32-10 draws, correlated shocks, every factor of
// kernels/market.py (same formulas, fp32 arithmetic), per-site mining margins, and
// accumulation (fp64 sums by warp reduction + atomicAdd, 32-bit histogram counts).
//
// The file compiles under NVRTC (CuPy RawModule) and, with HP_HOST_EMULATION defined, as plain
// C++ on the CPU (one "thread" at a time, warp of size one): tests/test_cuda_source.py builds it
// with g++ and checks it against the NumPy path bit for bit (RNG) and to fp32 accuracy (stats).

#ifdef HP_HOST_EMULATION
#include <math.h>
#define __global__
#define __device__
#define HP_INLINE static inline
HP_INLINE unsigned int hp_umulhi(unsigned int a, unsigned int b) {
    return (unsigned int)(((unsigned long long)a * (unsigned long long)b) >> 32);
}
HP_INLINE double hp_warp_sum(double v) { return v; }
HP_INLINE int hp_lane(void) { return 0; }
HP_INLINE void hp_atomic_add(double* p, double v) { *p += v; }
HP_INLINE void hp_atomic_inc(unsigned int* p) { *p += 1u; }
#else
#define HP_INLINE __device__ __forceinline__
HP_INLINE unsigned int hp_umulhi(unsigned int a, unsigned int b) { return __umulhi(a, b); }
HP_INLINE double hp_warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}
HP_INLINE int hp_lane(void) { return threadIdx.x & 31; }
HP_INLINE void hp_atomic_add(double* p, double v) { atomicAdd(p, v); }
HP_INLINE void hp_atomic_inc(unsigned int* p) { atomicAdd(p, 1u); }
#endif

#define HP_MAX_REGIONS 32
#define HP_MAX_FACTORS (5 + HP_MAX_REGIONS)
#define HP_MAX_NORMALS (HP_MAX_FACTORS + 1)
#define HP_MAX_LAG 24
#define HP_MAX_JUMPS 24
#define HP_JUMP_STREAM 64u
#define HP_SQRT_2PI 2.5066282746310002f
#define HP_TWO_PI 6.283185307179586

// ---- scalar parameter slots of `par` (see kernels/cuda.py: pack_params) ----
enum {
    P_LN_P0, P_BTC_DRIFT, P_BTC_VOL, P_JUMP_LAMBDA, P_JUMP_MEAN, P_JUMP_STD, P_BTC_MEAN_RET,
    P_LN_H0, P_HASH_DRIFT, P_HASH_VOL, P_HASH_BETA, P_HALVING_STEP,
    P_LN_LEASE0, P_LEASE_DRIFT_DT, P_LEASE_A, P_LEASE_SD,
    P_OCC_M, P_OCC_U0, P_OCC_A, P_OCC_SD,
    P_LN_GPU0, P_GPU_DRIFT, P_GPU_VOL, P_HIST_WIDTH, P_N_SCALARS
};
// ---- integer slots of `ipar`: sizes, then offsets (into par) of the arrays ----
enum {
    I_T, I_R, I_S, I_LAG, I_NF, I_NN, I_F, I_NB, I_W, I_NGROUPS, I_NFEAT_COLS,
    O_HPCONST, O_HALV, O_LEASEVAR, O_PTHETA, O_PX0, O_PA, O_PSD, O_PINTRA, O_CHOL,
    O_SLNREV, O_SHU, O_SSHARE, O_SFIXED, O_SRESALE, O_SHIFT, O_HISTLO, O_POISSON,
    O_GROUPW, I_SITE_REGION, I_GROUPS, I_N_SLOTS
};

HP_INLINE void philox4x32_10(unsigned int c[4], unsigned int k0, unsigned int k1) {
    for (int r = 0; r < 10; ++r) {
        if (r) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
        unsigned int hi0 = hp_umulhi(0xD2511F53u, c[0]), lo0 = 0xD2511F53u * c[0];
        unsigned int hi1 = hp_umulhi(0xCD9E8D57u, c[2]), lo1 = 0xCD9E8D57u * c[2];
        unsigned int n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0; c[1] = lo1; c[2] = n2; c[3] = lo0;
    }
}

HP_INLINE double hp_uniform(unsigned int x) { return ((double)x + 0.5) * 2.3283064365386963e-10; }

// Four normals per stream: Box-Muller on (x0, x1) and (x2, x3), as kernels/philox.py.
HP_INLINE void hp_normals(float* z, int count, unsigned long long path, unsigned int t,
                          unsigned int k0, unsigned int k1) {
    for (int s = 0; 4 * s < count; ++s) {
        unsigned int c[4] = {(unsigned int)(path & 0xFFFFFFFFull), (unsigned int)(path >> 32), t,
                             (unsigned int)s};
        philox4x32_10(c, k0, k1);
        for (int pair = 0; pair < 2; ++pair) {
            int i = 4 * s + 2 * pair;
            if (i >= count) break;
            float r = sqrtf(-2.0f * logf((float)hp_uniform(c[2 * pair])));
            float th = (float)(HP_TWO_PI * hp_uniform(c[2 * pair + 1]));
            z[i] = r * cosf(th);
            if (i + 1 < count) z[i + 1] = r * sinf(th);
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

HP_INLINE void hp_acc(double* dst, double v) {
    v = hp_warp_sum(v);
    if (hp_lane() == 0) hp_atomic_add(dst, v);
}

// One path, the whole horizon. `active` is false for padding threads of the last warp, which
// still take part in the warp reductions with zero contributions.
HP_INLINE void hp_path(const double* par, const int* ipar, unsigned int k0, unsigned int k1,
                       long long path, bool active, double* sums, unsigned int* hist,
                       float* feat, long long feat_row) {
    const int T = ipar[I_T], R = ipar[I_R], S = ipar[I_S], lag = ipar[I_LAG];
    const int nf = ipar[I_NF], nn = ipar[I_NN], F = ipar[I_F], NB = ipar[I_NB], W = ipar[I_W];
    const double* hpconst = par + ipar[O_HPCONST];
    const double* halv = par + ipar[O_HALV];
    const double* leasevar = par + ipar[O_LEASEVAR];
    const double* ptheta = par + ipar[O_PTHETA];
    const double* pa = par + ipar[O_PA];
    const double* psd = par + ipar[O_PSD];
    const double* pintra = par + ipar[O_PINTRA];
    const double* chol = par + ipar[O_CHOL];
    const double* slnrev = par + ipar[O_SLNREV];
    const double* shu = par + ipar[O_SHU];
    const double* sshare = par + ipar[O_SSHARE];
    const double* sfixed = par + ipar[O_SFIXED];
    const double* sresale = par + ipar[O_SRESALE];
    const double* shift = par + ipar[O_SHIFT];
    const double* histlo = par + ipar[O_HISTLO];
    const double* pois = par + ipar[O_POISSON];
    const double* groupw = par + ipar[O_GROUPW];
    const int* site_region = ipar + ipar[I_SITE_REGION];
    const int* groups = ipar + ipar[I_GROUPS];
    const int ncols = 4 + R;
    const float hist_w = (float)par[P_HIST_WIDTH];
    const unsigned long long upath = (unsigned long long)path;

    float z[HP_MAX_NORMALS], eps[HP_MAX_FACTORS], xpow[HP_MAX_REGIONS];
    float lnpow[HP_MAX_REGIONS], logs[6 + HP_MAX_REGIONS], past[HP_MAX_LAG + 1];
    float lnp = (float)par[P_LN_P0], lnh = (float)par[P_LN_H0];
    float ylease = 0.0f, uocc = (float)par[P_OCC_U0], lng = (float)par[P_LN_GPU0];
    for (int r = 0; r < R; ++r) xpow[r] = (float)par[ipar[O_PX0] + r];

    for (int t = 0; t < T; ++t) {
        hp_normals(z, nn, upath, (unsigned int)t, k0, k1);
        for (int i = 0; i < nf; ++i) {
            float e = 0.0f;
            for (int j = 0; j <= i; ++j) e += (float)chol[i * nf + j] * z[j];
            eps[i] = e;
        }
        float jumps = 0.0f;
        if (par[P_JUMP_LAMBDA] > 0.0) {
            unsigned int c[4] = {(unsigned int)(upath & 0xFFFFFFFFull), (unsigned int)(upath >> 32),
                                 (unsigned int)t, HP_JUMP_STREAM};
            philox4x32_10(c, k0, k1);
            double u = hp_uniform(c[0]);
            float count = 0.0f;
            for (int k = 0; k < HP_MAX_JUMPS; ++k) count += (u > pois[k]) ? 1.0f : 0.0f;
            jumps = count * (float)par[P_JUMP_MEAN] + sqrtf(count) * (float)par[P_JUMP_STD] * z[nf];
        }
        float ret = (float)par[P_BTC_DRIFT] + (float)par[P_BTC_VOL] * eps[0] + jumps;
        lnp += ret;
        past[t % (lag + 1)] = ret - (float)par[P_BTC_MEAN_RET];
        float lagged = (t >= lag) ? past[(t - lag) % (lag + 1)] : 0.0f;
        lnh += (float)par[P_HASH_DRIFT] + (float)par[P_HASH_VOL] * eps[1] +
               (float)par[P_HASH_BETA] * lagged + (halv[t] > 0.0 ? (float)par[P_HALVING_STEP] : 0.0f);
        float lnhp = (float)hpconst[t] + lnp - lnh;
        for (int r = 0; r < R; ++r) {
            float th = (float)ptheta[r];
            xpow[r] = th + (xpow[r] - th) * (float)pa[r] + (float)psd[r] * eps[5 + r];
            lnpow[r] = xpow[r];
        }
        ylease = (float)par[P_LEASE_A] * ylease + (float)par[P_LEASE_SD] * eps[2];
        float lnlease = (float)par[P_LN_LEASE0] + (float)par[P_LEASE_DRIFT_DT] * (float)(t + 1) +
                        ylease - 0.5f * (float)leasevar[t];
        float m = (float)par[P_OCC_M];
        uocc = m + (uocc - m) * (float)par[P_OCC_A] + (float)par[P_OCC_SD] * eps[3];
        lng += (float)par[P_GPU_DRIFT] + (float)par[P_GPU_VOL] * eps[4];

        // reported factors: btc, hashrate, hashprice, lease, occupancy, gpu, power per region
        logs[0] = lnp; logs[1] = lnh; logs[2] = lnhp; logs[3] = lnlease; logs[4] = uocc;
        logs[5] = lng;
        for (int r = 0; r < R; ++r) logs[6 + r] = lnpow[r];
        double* srow = sums + (long long)t * W;
        for (int f = 0; f < F; ++f) {
            float v = (f == 4) ? 1.0f / (1.0f + expf(-logs[f])) : expf(logs[f]);
            double dv = active ? (double)v - shift[f] : 0.0;
            hp_acc(srow + f, dv);
            hp_acc(srow + F + f, dv * dv);
            if (active && hist) {
                int b = (int)floorf((logs[f] - (float)histlo[f]) / hist_w);
                b = b < 0 ? 0 : (b >= NB ? NB - 1 : b);
                hp_atomic_inc(hist + ((long long)t * F + f) * NB + b);
            }
        }
        for (int s = 0; s < S; ++s) {
            int r = site_region[s];
            float lnrev = lnhp + (float)slnrev[s];
            float rev = expf(lnrev), p = expf(lnpow[r]);
            float put = hp_put(rev, p, lnpow[r] - lnrev, (float)pintra[r]);
            float c = (float)sfixed[s];
            float fixed = sresale[s] > 0.0 ? put + p - c : fmaxf(rev - c, 0.0f);
            float share = (float)sshare[s];
            double mg = active ? shu[s] * (double)(share * put + (1.0f - share) * fixed) : 0.0;
            hp_acc(srow + 2 * F + s, mg);
            hp_acc(srow + 2 * F + S + s, mg * mg);
        }
        if (active && feat) {
            float* row = feat + (feat_row * ipar[I_NGROUPS] + groups[t]) * ncols;
            float w = (float)groupw[t];
            float occ_ln = -log1pf(expf(-uocc));
            row[0] += w * lnhp; row[1] += w * lnp; row[2] += w * (lnlease + occ_ln); row[3] += w * lng;
            for (int r = 0; r < R; ++r) row[4 + r] += w * lnpow[r];
        }
    }
}

extern "C" __global__ void hp_simulate(const double* par, const int* ipar, unsigned int k0,
                                       unsigned int k1, long long path0, int n_paths,
                                       double* sums, unsigned int* hist, float* feat,
                                       int feat_paths) {
#ifdef HP_HOST_EMULATION
    for (int gid = 0; gid < n_paths; ++gid) {
#else
    int gid = blockIdx.x * blockDim.x + threadIdx.x;
    {
#endif
        bool active = gid < n_paths;
        long long path = path0 + (active ? gid : 0);
        float* f = (feat && active && gid < feat_paths) ? feat : 0;
        hp_path(par, ipar, k0, k1, path, active, sums, hist, f, gid);
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
        for (int j = 0; j < 4; ++j) out[4 * i + j] = c[j];
    }
}
