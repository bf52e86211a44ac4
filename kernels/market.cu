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
    P_LN_H0, P_HASH_DRIFT, P_HASH_VOL, P_HASH_BETA, P_HALVING_STEP, P_HASH_DOWN, P_HASH_UP,
    P_HASH_GAP0,
    P_LN_LEASE0, P_LEASE_DRIFT_DT, P_LEASE_A, P_LEASE_SD,
    P_OCC_M, P_OCC_U0, P_OCC_A, P_OCC_SD,
    P_LN_GPU0, P_GPU_DRIFT, P_GPU_VOL, P_HIST_WIDTH, P_N_SCALARS
};
// ---- integer slots of `ipar`: sizes, then offsets (into par) of the arrays ----
enum {
    I_T, I_R, I_S, I_LAG, I_NF, I_NN, I_F, I_NB, I_W, I_NGROUPS, I_NFEAT_COLS,
    O_HPCONST, O_HALV, O_LEASEVAR, O_PTHETA, O_PX0, O_PA, O_PSD, O_PINTRA, O_CHOL,
    O_SLNREV, O_SHU, O_SSHARE, O_SFIXED, O_SRESALE, O_SHIFT, O_HISTLO, O_POISSON,
    O_GROUPW, O_LNBE, I_SITE_REGION, I_GROUPS, I_N_SLOTS
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

// State of one path between periods.
typedef struct {
    float lnp, lnh, ylease, uocc, lng;
    float xpow[HP_MAX_REGIONS];
    float past[HP_MAX_LAG + 1];
    float gap[HP_MAX_LAG + 1];  // margin gaps g of the breakeven feedback
} hp_state;

HP_INLINE void hp_init(const double* par, const int* ipar, hp_state* st) {
    st->lnp = (float)par[P_LN_P0];
    st->lnh = (float)par[P_LN_H0];
    st->ylease = 0.0f;
    st->uocc = (float)par[P_OCC_U0];
    st->lng = (float)par[P_LN_GPU0];
    for (int r = 0; r < ipar[I_R]; ++r) st->xpow[r] = (float)par[ipar[O_PX0] + r];
}

// Advance one path by period t: every factor of kernels/market.py (iter_periods).
// Out: lnhp, lnlease, lnpow[R] (log power = xpow); the state holds the rest.
HP_INLINE void hp_step(const double* par, const int* ipar, unsigned int k0, unsigned int k1,
                       unsigned long long upath, int t, hp_state* st, float* lnhp,
                       float* lnlease) {
    const int R = ipar[I_R], lag = ipar[I_LAG], nf = ipar[I_NF], nn = ipar[I_NN];
    const double* chol = par + ipar[O_CHOL];
    const double* ptheta = par + ipar[O_PTHETA];
    const double* pa = par + ipar[O_PA];
    const double* psd = par + ipar[O_PSD];
    const double* pois = par + ipar[O_POISSON];
    float z[HP_MAX_NORMALS], eps[HP_MAX_FACTORS];
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
    st->lnp += ret;
    st->past[t % (lag + 1)] = ret - (float)par[P_BTC_MEAN_RET];
    float lagged = (t >= lag) ? st->past[(t - lag) % (lag + 1)] : 0.0f;
    // breakeven feedback (kernels/market.py docstring): fast down, lagged up
    float lnc = (float)par[ipar[O_HPCONST] + t];
    float xh = st->lnh + (float)par[P_HASH_DRIFT];
    float g = lnc + st->lnp - xh - (float)par[ipar[O_LNBE] + t];
    st->gap[t % (lag + 1)] = g;
    float g_lag = (t >= lag) ? st->gap[(t - lag) % (lag + 1)] : (float)par[P_HASH_GAP0];
    st->lnh = xh + (float)par[P_HASH_DOWN] * fminf(g, 0.0f) +
              (float)par[P_HASH_UP] * fmaxf(g_lag, 0.0f) + (float)par[P_HASH_VOL] * eps[1] +
              (float)par[P_HASH_BETA] * lagged +
              (par[ipar[O_HALV] + t] > 0.0 ? (float)par[P_HALVING_STEP] : 0.0f);
    *lnhp = lnc + st->lnp - st->lnh;
    for (int r = 0; r < R; ++r) {
        float th = (float)ptheta[r];
        st->xpow[r] = th + (st->xpow[r] - th) * (float)pa[r] + (float)psd[r] * eps[5 + r];
    }
    st->ylease = (float)par[P_LEASE_A] * st->ylease + (float)par[P_LEASE_SD] * eps[2];
    *lnlease = (float)par[P_LN_LEASE0] + (float)par[P_LEASE_DRIFT_DT] * (float)(t + 1) + st->ylease -
               0.5f * (float)par[ipar[O_LEASEVAR] + t];
    float m = (float)par[P_OCC_M];
    st->uocc = m + (st->uocc - m) * (float)par[P_OCC_A] + (float)par[P_OCC_SD] * eps[3];
    st->lng += (float)par[P_GPU_DRIFT] + (float)par[P_GPU_VOL] * eps[4];
}

// Mining margin per MW of site s [$/MW/period] (kernels/market.py: mining_margin).
HP_INLINE float hp_margin(const double* par, const int* ipar, int s, float lnhp, const float* lnpow) {
    const int r = (ipar + ipar[I_SITE_REGION])[s];
    float lnrev = lnhp + (float)par[ipar[O_SLNREV] + s];
    float rev = expf(lnrev), p = expf(lnpow[r]);
    float put = hp_put(rev, p, lnpow[r] - lnrev, (float)par[ipar[O_PINTRA] + r]);
    float c = (float)par[ipar[O_SFIXED] + s];
    float fixed = par[ipar[O_SRESALE] + s] > 0.0 ? put + p - c : fmaxf(rev - c, 0.0f);
    float share = (float)par[ipar[O_SSHARE] + s];
    return (float)(par[ipar[O_SHU] + s] * (double)(share * put + (1.0f - share) * fixed));
}

// One path, the whole horizon: statistics for kernels/simulate.py. `active` is false for
// padding threads of the last warp, which still take part in the warp reductions with zero
// contributions.
HP_INLINE void hp_path(const double* par, const int* ipar, unsigned int k0, unsigned int k1,
                       long long path, bool active, double* sums, unsigned int* hist,
                       float* feat, long long feat_row) {
    const int T = ipar[I_T], R = ipar[I_R], S = ipar[I_S];
    const int F = ipar[I_F], NB = ipar[I_NB], W = ipar[I_W];
    const double* shift = par + ipar[O_SHIFT];
    const double* histlo = par + ipar[O_HISTLO];
    const double* groupw = par + ipar[O_GROUPW];
    const int* groups = ipar + ipar[I_GROUPS];
    const int ncols = 4 + R;
    const float hist_w = (float)par[P_HIST_WIDTH];
    float logs[6 + HP_MAX_REGIONS];
    hp_state st;
    hp_init(par, ipar, &st);
    for (int t = 0; t < T; ++t) {
        float lnhp, lnlease;
        hp_step(par, ipar, k0, k1, (unsigned long long)path, t, &st, &lnhp, &lnlease);
        // reported factors: btc, hashrate, hashprice, lease, occupancy, gpu, power per region
        logs[0] = st.lnp; logs[1] = st.lnh; logs[2] = lnhp; logs[3] = lnlease; logs[4] = st.uocc;
        logs[5] = st.lng;
        for (int r = 0; r < R; ++r) logs[6 + r] = st.xpow[r];
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
            double mg = active ? (double)hp_margin(par, ipar, s, lnhp, st.xpow) : 0.0;
            hp_acc(srow + 2 * F + s, mg);
            hp_acc(srow + 2 * F + S + s, mg * mg);
        }
        if (active && feat) {
            float* row = feat + (feat_row * ipar[I_NGROUPS] + groups[t]) * ncols;
            float w = (float)groupw[t];
            float occ_ln = -log1pf(expf(-st.uocc));
            row[0] += w * lnhp; row[1] += w * st.lnp; row[2] += w * (lnlease + occ_ln);
            row[3] += w * st.lng;
            for (int r = 0; r < R; ++r) row[4 + r] += w * st.xpow[r];
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

// ---- plan evaluation (kernels/evaluate.py: simulate_plan), one thread per path ----
enum {
    E_GROWTH, E_MIN_CASH, E_BTC_FLOOR, E_MAX_SALE, E_HELD0, E_CASH0, E_DSCR, E_LEV, E_DISC,
    E_MULT_AI, E_MULT_MIN, E_SALVAGE_END, E_RACK_REV, E_RACK_POW, E_RACK_OPEX, E_MU_SCALE,
    E_TOL, E_N_SCALARS
};
enum {
    J_S, J_T, J_L, J_F, J_PPY, J_GAP,
    Q_ASIC, Q_RACKS, Q_LEASE, Q_RENT, Q_MARKET, Q_ITOPEX, Q_PEN, Q_CAPEX, Q_DRAWS, Q_REPAY,
    Q_AMORT, Q_RATES, Q_FEES, Q_SIZES, Q_ALLOWED, Q_WINDOW, Q_SOLD, Q_FIXED, Q_HAZARD,
    Q_PLANNED, Q_DIL, Q_RHO, Q_CAPEXIT, Q_ITOPEXMW, Q_REMCONV, Q_BREACH, J_N_SLOTS
};
// Q_BREACH: consequence of a covenant breach (0 ignore, 1 accelerate, 2 waiver), waiver fee
// share, waiver rate step-up per period. Output breach: bit 0 covenant, bit 1 minimum cash.
#define HP_BREACH_ACCELERATE 1
#define HP_BREACH_WAIVER 2
#define HP_MAX_LEASES 64
#define HP_MAX_FACILITIES 16
#define HP_MAX_PPY 12
#define HP_DEFAULT_STREAM 128u

HP_INLINE void hp_eval_path(const double* par, const int* ipar, const double* q, const int* qi,
                            unsigned int k0, unsigned int k1, long long path, bool active,
                            double* equity, int* default_period, int* breach, double* min_dscr,
                            double* extra_btc_out, double* extra_draw_out, double* ai_sum,
                            double* debt_sum, double* cash_keep, int keep_row) {
    const int S = qi[J_S], T = qi[J_T], L = qi[J_L], F = qi[J_F], ppy = qi[J_PPY], gap = qi[J_GAP];
    const int* site_region = ipar + ipar[I_SITE_REGION];
    const double* asic = q + qi[Q_ASIC];
    const double* racks = q + qi[Q_RACKS];
    const double* lease = q + qi[Q_LEASE];
    const double* rent = q + qi[Q_RENT];
    const double* draws = q + qi[Q_DRAWS];
    const double* repay = q + qi[Q_REPAY];
    const double* allowed = q + qi[Q_ALLOWED];
    const double* window = q + qi[Q_WINDOW];
    const double* fixed = q + qi[Q_FIXED];
    const double* hazard = q + qi[Q_HAZARD];
    const unsigned long long upath = (unsigned long long)path;
    hp_state st;
    hp_init(par, ipar, &st);
    int defaulted_at[HP_MAX_LEASES];
    for (int l = 0; l < L; ++l) defaulted_at[l] = T;
    double balance[HP_MAX_FACILITIES], drawn[HP_MAX_FACILITIES], rate[HP_MAX_FACILITIES];
    bool emergency_used[HP_MAX_FACILITIES], open[HP_MAX_FACILITIES];
    for (int f = 0; f < F; ++f) {
        balance[f] = 0.0; drawn[f] = 0.0; emergency_used[f] = false; open[f] = true;
        rate[f] = q[qi[Q_RATES] + f];
    }
    const double* rule = q + qi[Q_BREACH];
    const int on_breach = (int)rule[0];
    bool cash_breached = false;
    double ring_ocf[HP_MAX_PPY], ring_ds[HP_MAX_PPY];
    double cash = q[E_CASH0], held = q[E_HELD0], extra_btc = 0.0, extra_draw = 0.0;
    double huge = 1e308;
    double mining_last = 0.0, ai_noi_last = 0.0, btc_last = 0.0, dscr_min = huge * 10.0;
    double dilution = 0.0, option = 0.0;  // DIL and Σ_s opt[s]·C[s] of kernels/cashflow.py
    bool alive = true, breached = false;
    int dead_at = T;
    for (int t = 0; t < T; ++t) {
        float lnhp, lnlease;
        hp_step(par, ipar, k0, k1, upath, t, &st, &lnhp, &lnlease);
        double btc = exp((double)st.lnp);
        double lxo = exp((double)lnlease) / (1.0 + exp(-(double)st.uocc));
        double mu = lxo * q[E_MU_SCALE];
        // tenant defaults: lease l defaults in t when its lane's uniform is below the hazard
        for (int b = 0; 4 * b < L; ++b) {
            unsigned int c[4] = {(unsigned int)(upath & 0xFFFFFFFFull), (unsigned int)(upath >> 32),
                                 (unsigned int)t, HP_DEFAULT_STREAM + (unsigned int)b};
            philox4x32_10(c, k0, k1);
            for (int lane = 0; lane < 4 && 4 * b + lane < L; ++lane) {
                int l = 4 * b + lane;
                if (defaulted_at[l] == T && hp_uniform(c[lane]) < hazard[l]) defaulted_at[l] = t;
            }
        }
        // operating cash flow
        double mining = 0.0, gross = 0.0, rack_income = 0.0;
        double gpu = exp((double)st.lng);
        for (int s = 0; s < S; ++s) {
            double m = (double)hp_margin(par, ipar, s, lnhp, st.xpow);
            double a = asic[s * T + t];
            mining += (m - fixed[s]) * a;
            gross += m * a;
            if (t == T - 1) {  // option to convert the convertible MW still mining
                const double rho = q[qi[Q_RHO] + s], ppyd = (double)ppy;
                double ai_v = rho * (q[E_MULT_AI] * ppyd * (mu - q[qi[Q_ITOPEXMW] + s]) -
                                     q[qi[Q_CAPEXIT] + s]);
                double min_v = q[E_MULT_MIN] * ppyd * (m - fixed[s]);
                option += q[qi[Q_REMCONV] + s] * fmax(ai_v - min_v, 0.0);
            }
            double pw = exp((double)st.xpow[site_region[s]]);
            rack_income += (q[E_RACK_REV] * gpu - q[E_RACK_POW] * pw - q[E_RACK_OPEX]) * racks[s * T + t];
        }
        double lease_income = 0.0;
        for (int l = 0; l < L; ++l) {
            double surv = defaulted_at[l] > t ? 1.0 : 0.0;
            double relet = defaulted_at[l] + gap <= t ? 1.0 : 0.0;
            lease_income += lease[l * T + t] * (rent[l * T + t] * surv + mu * relet);
        }
        double ai_revenue = lease_income + rack_income + mu * q[qi[Q_MARKET] + t];
        double ai_noi = ai_revenue - q[qi[Q_ITOPEX] + t];
        double ocf = mining + ai_noi - q[qi[Q_PEN] + t];
        double denom = fmax(ai_revenue, 0.0) + fmax(gross, 0.0);
        double share = denom > 0.0 ? fmax(ai_revenue, 0.0) / denom : 0.0;
        // financing of the plan
        double service = 0.0, sched = 0.0, inflow = 0.0;
        dilution *= q[E_GROWTH];
        const bool was_alive = alive;
        for (int f = 0; f < F; ++f) {
            double planned = open[f] ? draws[f * T + t] : 0.0;
            double interest = balance[f] * rate[f];
            dilution += balance[f] * q[qi[Q_DIL] + f];
            drawn[f] += planned;
            double principal = drawn[f] * repay[f * T + t];
            balance[f] += planned - principal;
            service += interest + principal;
            sched += interest + principal * q[qi[Q_AMORT] + f];
            inflow += planned * (1.0 - q[qi[Q_FEES] + f]);
        }
        double sold = q[qi[Q_SOLD] + t];
        held -= sold;
        cash = cash * q[E_GROWTH] + ocf + inflow - service - q[qi[Q_CAPEX] + t] + btc * sold;
        // recourse: sell BTC above the floor, then draw what is left of open facilities
        if (alive && cash < q[E_MIN_CASH]) {
            double room = fmax(fmin(held - q[E_BTC_FLOOR], q[E_MAX_SALE] - sold), 0.0);
            double sell = fmin((q[E_MIN_CASH] - cash) / btc, room);
            held -= sell;
            cash += sell * btc;
            extra_btc += sell;
            for (int f = 0; f < F; ++f) {
                if (allowed[f * T + t] <= 0.0 || !open[f] || cash >= q[E_MIN_CASH]) continue;
                double fee = q[qi[Q_FEES] + f];
                double left = fmax(q[qi[Q_SIZES] + f] - drawn[f], 0.0);
                double take = fmin((q[E_MIN_CASH] - cash) / (1.0 - fee), left);
                drawn[f] += take;
                balance[f] += take;
                cash += take * (1.0 - fee);
                extra_draw += take;
                if (take > 0.0) emergency_used[f] = true;
            }
        }
        if (alive && cash < -q[E_TOL]) { alive = false; dead_at = t; }
        double debt = 0.0;
        for (int f = 0; f < F; ++f) debt += balance[f];
        // covenants on trailing years
        ring_ocf[t % ppy] = ocf;
        ring_ds[t % ppy] = sched;
        int w = t + 1 < ppy ? t + 1 : ppy;
        double ocf_trail = 0.0, ds_trail = 0.0;
        for (int i = 0; i < w; ++i) { ocf_trail += ring_ocf[(t - i) % ppy]; ds_trail += ring_ds[(t - i) % ppy]; }
        bool tested = false;
        bool live[HP_MAX_FACILITIES];
        for (int f = 0; f < F; ++f) {
            live[f] = t >= ppy - 1 && open[f] && window[f * T + t] > 0.0 &&
                      (q[qi[Q_PLANNED] + f] > 0.0 || emergency_used[f]);
            tested |= live[f];
        }
        if (tested && alive) {
            bool bad = ocf_trail < q[E_DSCR] * ds_trail - q[E_TOL] ||
                       debt > q[E_LEV] * ocf_trail * ((double)ppy / w) + q[E_TOL];
            breached |= bad;
            if (ds_trail > 0.0) dscr_min = fmin(dscr_min, ocf_trail / ds_trail);
            if (bad && (on_breach == HP_BREACH_ACCELERATE || on_breach == HP_BREACH_WAIVER)) {
                for (int f = 0; f < F; ++f) {
                    if (!live[f]) continue;
                    if (on_breach == HP_BREACH_ACCELERATE) {  // the balance falls due
                        cash -= balance[f];
                        debt -= balance[f];
                        balance[f] = 0.0;
                        drawn[f] = 0.0;
                        open[f] = false;
                    } else {  // waiver: fee on the balance, rate step-up for the rest of the term
                        cash -= rule[1] * balance[f];
                        rate[f] = q[qi[Q_RATES] + f] + rule[2];
                    }
                }
                // pay from treasury BTC above the floor, else default
                if (cash < q[E_MIN_CASH]) {
                    double sell = fmin((q[E_MIN_CASH] - cash) / btc, fmax(held - q[E_BTC_FLOOR], 0.0));
                    held -= sell;
                    cash += sell * btc;
                    extra_btc += sell;
                }
                if (cash < -q[E_TOL]) { alive = false; dead_at = t; }
            }
        }
        if (was_alive && cash < q[E_MIN_CASH] - q[E_TOL]) cash_breached = true;
        double cash_out = alive ? cash : 0.0;
        if (cash_keep && active) cash_keep[(long long)keep_row * T + t] = cash_out;
        hp_acc(ai_sum + t, active ? share : 0.0);
        hp_acc(debt_sum + t, active ? debt : 0.0);
        mining_last = mining;
        ai_noi_last = ai_noi;
        btc_last = btc;
    }
    if (!active) return;
    double debt = 0.0;
    for (int f = 0; f < F; ++f) debt += balance[f];
    double terminal = cash + btc_last * held + ppy * (q[E_MULT_AI] * ai_noi_last + q[E_MULT_MIN] * mining_last)
                      + option + q[E_SALVAGE_END] - debt - dilution;
    *equity = alive ? terminal * q[E_DISC] : 0.0;
    *default_period = dead_at;
    *breach = (breached ? 1 : 0) | (cash_breached ? 2 : 0);
    *min_dscr = dscr_min;
    *extra_btc_out = extra_btc;
    *extra_draw_out = extra_draw;
}

extern "C" __global__ void hp_evaluate(const double* par, const int* ipar, const double* q,
                                       const int* qi, unsigned int k0, unsigned int k1,
                                       long long path0, int n_paths, double* equity,
                                       int* default_period, int* breach, double* min_dscr,
                                       double* extra_btc, double* extra_draw, double* ai_sum,
                                       double* debt_sum, double* cash_keep, int n_keep) {
#ifdef HP_HOST_EMULATION
    for (int gid = 0; gid < n_paths; ++gid) {
#else
    int gid = blockIdx.x * blockDim.x + threadIdx.x;
    {
#endif
        bool active = gid < n_paths;
        int i = active ? gid : 0;
        hp_eval_path(par, ipar, q, qi, k0, k1, path0 + i, active, equity + i, default_period + i,
                     breach + i, min_dscr + i, extra_btc + i, extra_draw + i, ai_sum, debt_sum,
                     (active && gid < n_keep) ? cash_keep : 0, gid);
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
