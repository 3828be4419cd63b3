/*
 * Tensor-core body of the fused window attention (fp16 tensors, window size a multiple of 8, sm_80+).
 *
 * FlashAttention-2 on mma.sync m16n8k16 (fp16 inputs, fp32 accumulation):
 *   - one thread block per (query block, window, head, batch), up to 8 warps; each warp owns 16 queries and holds
 *     them as mma A fragments for the whole window;
 *   - K and V are staged kKeyTile keys at a time as [channel][key] rows, i.e. as they lie in the NCHW map: one
 *     16-byte cp.async per 8 keys of one channel, kStages tiles in flight, one barrier per tile. Windows whose
 *     keys are not whole 16-byte runs of the map (columns reflected at the right edge, a width or plane that is
 *     not a multiple of 8) take the same loop with element loads and the reflect applied per element;
 *   - per tile each warp starts its 16 x kKeyTile scores from the sqrt(d)-scaled bias (8-byte (o, o + 1) pairs
 *     staged once per block), adds Q K^T with mma (B fragments by ldmatrix.trans), takes the row maximum (two
 *     shuffles), exponentiates with one fma per score folding 1/sqrt(d), log2(e) and the maximum, rescales the accumulators only when some row's maximum grew, packs the probabilities to fp16 A
 *     fragments (the C layout of two n-tiles is the A layout of one k-step) and accumulates P V with mma
 *     (ldmatrix), plus P times a column of ones for the row sums;
 *   - the window size is a template parameter for the published sizes (bias offsets and staging addresses
 *     fold to constants; 0 reads it at run time); blocks whose queries all lie in padding rows return at once,
 *     warps whose queries are all padding only stage;
 *   - the accumulators are normalised once at the end and stored straight into [B, C, H, W] (padding skipped).
 *
 * Fragment layout (PTX ISA, mma.m16n8k16, f16): lane = 4 * group + quad; A registers hold rows group / group + 8
 * and columns 2 * quad (+1) / 2 * quad + 8 (+1); B registers hold rows (k) 2 * quad (+1) / 2 * quad + 8 (+1) of
 * column (n) group; C registers hold rows group / group + 8 and columns 2 * quad (+1).
 */
#pragma once

#include "escWindowAttentionCommon.cuh"

#include <type_traits>

namespace esc
{
namespace device
{

//! Two floats rounded to fp16 and packed into one register, `lo` in the low half (the lower column / row).
ESC_DEVICE uint32_t packHalf2(float lo, float hi)
{
    __half2 const pair = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t const*>(&pair);
}

constexpr uint32_t kHALF2_ONES = 0x3C003C00U; //!< (1.0, 1.0) in fp16

template <typename TableT, int32_t kHeadSize, int32_t kWindow>
ESC_DEVICE void mmaWindowAttention(
    __half const* __restrict__ qkv, TableT const* __restrict__ table, __half* __restrict__ out, WindowGeometry const g)
{
    using Tiling = MmaTiling<kHeadSize>;
    constexpr int32_t kKeyTile = Tiling::kKeyTile;
    constexpr int32_t kKeyGroup = Tiling::kKeyGroup;
    constexpr int32_t kStride = Tiling::kStageStride;
    constexpr int32_t kStages = Tiling::kStages;
    constexpr int32_t kScoreTiles = kKeyTile / 8;     // n-tiles of S per key tile
    constexpr int32_t kKeySteps = kKeyTile / 16;      // k-steps of P V per key tile
    constexpr int32_t kChannelSteps = kHeadSize / 16; // k-steps of Q K^T
    constexpr int32_t kChannelTiles = kHeadSize / 8;  // n-tiles of P V
    constexpr bool kFixedWindow = kWindow != 0;
    // With 64 % w == 0 every tile starts a window row, so a key group's bias offset is a constant plus the tile's.
    constexpr bool kTileStartsRow = kFixedWindow && kKeyTile % (kFixedWindow ? kWindow : 1) == 0;
    constexpr int32_t kFixedThreads = 32 * kMmaWarps<kFixedWindow ? kWindow : 8>; // used only for a fixed window
    constexpr int32_t kCopies = 2 * kHeadSize * (kKeyTile / kKeyGroup); // 16-byte copies per tile (K and V)

    int32_t const w = kFixedWindow ? kWindow : g.window;
    int32_t const tokens = w * w;
    int32_t const side = 2 * w - 1;
    int32_t const threads = kFixedWindow ? kFixedThreads : blockSize();
    BlockWindow<__half> const block = locateBlock<__half, kHeadSize>(qkv, out, g);
    int32_t const y0 = block.y0;
    int32_t const x0 = block.x0;
    int32_t const blockQueries = threads / 32 * Tiling::kWarpQueries;
    int32_t const firstQuery = block.queryBlock * blockQueries;
    if (y0 + firstQuery / w >= g.height)
    {
        return; // every query of the block lies in the bottom padding (the whole block agrees)
    }
    int32_t const lastQuery = lesser(tokens, firstQuery + blockQueries) - 1;
    int32_t const tid = threadRank();
    int32_t const lane = tid % 32;
    int32_t const group = lane / 4;
    int32_t const quad = lane % 4;

    // Shared memory: kStages x (K [kHeadSize][kStride], V [kHeadSize][kStride]) halves, the bias offset of each
    // group of 8 keys, the bias rows as (o, o + 1) pairs.
    __half* const stages = static_cast<__half*>(sharedMemory());
    int32_t* const groupOffset = reinterpret_cast<int32_t*>(stages + kStages * Tiling::kStageHalves);
    float2* const biasPairs = reinterpret_cast<float2*>(groupOffset + tokens / kKeyGroup);

    // Scores are kept as s' = q . k + sqrt(d) * bias, whose maximum is that of the scores; exp2((s' - m') * scale)
    // with scale = log2(e) / sqrt(d) is then one fma per score, and q and the mma stay exact (no pre-scaled q).
    float const biasScale = sqrtf(static_cast<float>(kHeadSize));
    float const scale = kLOG2E / biasScale;

    // Bias rows of this block's queries (row of (query row qh, key row kh) is kh - qh + w - 1), sqrt(d)-scaled.
    int32_t const firstRow = w - 1 - lastQuery / w;
    int32_t const rowCount = w + lastQuery / w - firstQuery / w;
    {
        TableT const* const rows = table + (static_cast<int64_t>(block.head) * side + firstRow) * side;
        int32_t const entries = rowCount * side;
        for (int32_t e = tid; e < entries; e += threads)
        {
            float const next = e + 1 < entries ? loadFloat(rows + e + 1) * biasScale : 0.F;
            biasPairs[e] = make_float2(loadFloat(rows + e) * biasScale, next);
        }
        for (int32_t m = tid; m < tokens / kKeyGroup; m += threads)
        {
            int32_t const j = m * kKeyGroup; // a group never straddles two window rows (w is a multiple of 8)
            groupOffset[m] = (j / w) * side + j % w;
        }
    }

    // This lane's two query rows (group and group + 8 of the warp's 16).
    int32_t const warpQuery = firstQuery + tid / 32 * Tiling::kWarpQueries;
    // Query (qh, qw) of the window for this lane's row r (group + 8 r of the warp's 16), and whether it is stored.
    auto const queryOf = [&](int32_t r, int32_t& qh, int32_t& qw)
    {
        int32_t const token = warpQuery + group + 8 * r;
        int32_t const t = lesser(token, tokens - 1);
        qh = t / w;
        qw = t % w;
        return token < tokens && y0 + qh < g.height && x0 + qw < g.width;
    };
    int32_t biasBase[2]; // pair index of (query, key 2 * quad of a group at offset 0)
    int64_t srcPixel[2];
    bool stores = false;
#pragma unroll
    for (int32_t r = 0; r < 2; ++r)
    {
        int32_t qh = 0;
        int32_t qw = 0;
        stores = queryOf(r, qh, qw) || stores;
        srcPixel[r] = sourcePixel(y0 + qh, x0 + qw, g);
        biasBase[r] = (w - 1 - qh - firstRow) * side + (w - 1 - qw) + 2 * quad;
    }
    // Row group + 8 is 8 columns left of row group in the bias where a warp's 16 queries share a window row (w a
    // multiple of 16), one bias row up for w = 8: a constant difference saves a register in the main loop.
    constexpr int32_t kLowerBiasStep = !kFixedWindow ? 0 : (kWindow % 16 == 0 ? 8 : (kWindow == 8 ? 2 * 8 - 1 : 0));
    int32_t const lowerBias = kLowerBiasStep != 0 ? biasBase[0] - kLowerBiasStep : biasBase[1];
    // The plan makes blockQueries divide tokens; a warp whose queries are all padding only stages.
    bool const warpActive = anyInWarp(stores);

    uint32_t qFragment[kChannelSteps][4];
#pragma unroll
    for (int32_t ks = 0; ks < kChannelSteps; ++ks)
    {
        int32_t const c = 16 * ks + 2 * quad;
#pragma unroll
        for (int32_t i = 0; i < 4; ++i)
        {
            int32_t const r = i % 2; // row group + 8 * r
            int32_t const col = c + 8 * (i / 2);
            __half const* const p = block.q + col * g.plane + srcPixel[r];
            __half2 const pair = __halves2half2(loadReadOnly(p), loadReadOnly(p + g.plane));
            qFragment[ks][i] = *reinterpret_cast<uint32_t const*>(&pair);
        }
    }

    // Staging of tile t into stage buffer `buffer`: copy e of a tile is (tensor K/V, channel, key group), key groups
    // fastest so that consecutive threads read consecutive pixels. The 16-byte path needs every group of the
    // window to be 8 whole pixels of one (possibly reflected) map row, at 16-byte aligned addresses.
    bool const wholeGroups = x0 + w <= g.width && g.width % kKeyGroup == 0 && g.plane % kKeyGroup == 0
        && reinterpret_cast<uintptr_t>(qkv) % 16 == 0;
    auto const stageCopy = [&](auto async, int32_t e, int32_t t, __half* buffer)
    {
        int32_t const kv = e / (kHeadSize * (kKeyTile / kKeyGroup));
        int32_t const c = (e / (kKeyTile / kKeyGroup)) % kHeadSize;
        int32_t const m = e % (kKeyTile / kKeyGroup);
        int32_t const j = t * kKeyTile + m * kKeyGroup;
        int32_t const row = reflectIndex(y0 + j / w, g.height);
        int32_t const col = x0 + j % w;
        __half const* const plane = (kv == 0 ? block.k : block.v) + c * g.plane;
        __half* const destination = buffer + (kv * kHeadSize + c) * kStride + m * kKeyGroup;
        if constexpr (decltype(async)::value)
        {
            copyAsync16(destination, plane + static_cast<int64_t>(row) * g.width + col);
        }
        else
        {
            // Reflect about the last column: pixel col + i of the row is mirror - |col + i - (width - 1)|.
            __half const* const mirror = plane + static_cast<int64_t>(row) * g.width + (g.width - 1);
            int32_t const past = opaqueValue(col - (g.width - 1));
#pragma unroll
            for (int32_t i = 0; i < kKeyGroup; ++i)
            {
                destination[i] = loadReadOnly(mirror - abs(past + i));
            }
        }
    };
    // Where every tile starts a window row, a copy's map column and row within the tile are the same in every tile:
    // each thread keeps its copies' column pointers and rows, and only the (reflected) map row changes per tile.
    constexpr int32_t kCopiesPerThread = kFixedWindow ? (kCopies + kFixedThreads - 1) / kFixedThreads : 1;
    __half const* copyColumn[kCopiesPerThread];
    int32_t copyRow[kCopiesPerThread];
    if constexpr (kTileStartsRow)
    {
#pragma unroll
        for (int32_t i = 0; i < kCopiesPerThread; ++i)
        {
            int32_t const e = lesser(tid + i * kFixedThreads, kCopies - 1);
            int32_t const kv = e / (kHeadSize * (kKeyTile / kKeyGroup));
            int32_t const c = (e / (kKeyTile / kKeyGroup)) % kHeadSize;
            int32_t const j = e % (kKeyTile / kKeyGroup) * kKeyGroup;
            copyColumn[i] = (kv == 0 ? block.k : block.v) + c * g.plane + x0 + j % w;
            copyRow[i] = y0 + j / w;
        }
    }
    auto const stageTile = [&](auto async, int32_t t)
    {
        __half* const buffer = stages + (t % kStages) * Tiling::kStageHalves;
        if constexpr (kTileStartsRow && decltype(async)::value)
        {
#pragma unroll
            for (int32_t i = 0; i < kCopiesPerThread; ++i)
            {
                int32_t const e = tid + i * kFixedThreads;
                if (kCopies % kFixedThreads == 0 || e < kCopies)
                {
                    constexpr int32_t kRowsPerTile = kKeyTile / (kTileStartsRow ? kWindow : 1);
                    int32_t const row = reflectIndex(copyRow[i] + t * kRowsPerTile, g.height);
                    int32_t const slot = e / (kKeyTile / kKeyGroup) * kStride + e % (kKeyTile / kKeyGroup) * kKeyGroup;
                    copyAsync16(buffer + slot, copyColumn[i] + static_cast<int64_t>(row) * g.width);
                }
            }
        }
        else if constexpr (kFixedWindow)
        {
#pragma unroll
            for (int32_t i = 0; i < (kCopies + kFixedThreads - 1) / kFixedThreads; ++i)
            {
                // Windows 24 and 48: the copy's coordinates are recomputed per tile (held, they would spill).
                int32_t const e = (kTileStartsRow ? tid : opaqueValue(tid)) + i * kFixedThreads;
                if (kCopies % kFixedThreads == 0 || e < kCopies)
                {
                    stageCopy(async, e, t, buffer);
                }
            }
        }
        else
        {
            for (int32_t e = tid; e < kCopies; e += threads)
            {
                stageCopy(async, e, t, buffer);
            }
        }
    };

    // Per-lane shared-memory offsets (halves) of the ldmatrix rows: lane l addresses row l % 8 of matrix l / 8.
    int32_t const matrix = lane / 8;
    int32_t const matrixRow = lane % 8;
    // K^T fragments (ldmatrix.trans of [channel][key]): matrices (channels +0/+8) x (n-tiles 2np / 2np + 1).
    int32_t const keyLane = (8 * (matrix % 2) + matrixRow) * kStride + 8 * (matrix / 2);
    // V fragments (ldmatrix of [channel][key]): matrices (keys +0/+8) x (channel n-tiles 2ntp / 2ntp + 1).
    int32_t const valueLane = (kHeadSize + 8 * (matrix / 2) + matrixRow) * kStride + 8 * (matrix % 2);

    float acc[kChannelTiles][4];
#pragma unroll
    for (int32_t nt = 0; nt < kChannelTiles; ++nt)
    {
#pragma unroll
        for (int32_t i = 0; i < 4; ++i)
        {
            acc[nt][i] = 0.F;
        }
    }
    float rowSum[4] = {0.F, 0.F, 0.F, 0.F}; // P times ones: registers 0, 1 hold row group's sum, 2, 3 row group + 8's
    float rowMax[2] = {-INFINITY, -INFINITY};

    auto const mainLoop = [&](auto async)
    {
        int32_t const tiles = tokens / kKeyTile; // w is a multiple of 8, so tokens is a multiple of 64
        stageTile(async, 0);
        commitAsyncGroup();
        if (tiles > 1)
        {
            stageTile(async, 1);
        }
        commitAsyncGroup();
        for (int32_t t = 0; t < tiles; ++t)
        {
            waitAsyncGroups<1>(); // this thread's copies of tile t have landed (only t + 1 may be in flight)
            syncBlock(); // everyone's have; every warp is done with tile t - 1, whose buffer tile t + 2 takes
            if (t + 2 < tiles)
            {
                stageTile(async, t + 2);
            }
            commitAsyncGroup(); // possibly empty: one group per iteration keeps the wait count constant
            if (!warpActive)
            {
                continue;
            }
            __half const* const buffer = stages + (t % kStages) * Tiling::kStageHalves;

            // S' = sqrt(d) bias + Q K^T for 16 queries x kKeyTile keys.
            float s[kScoreTiles][4];
#pragma unroll
            for (int32_t nt = 0; nt < kScoreTiles; ++nt)
            {
                // Keys 8 nt + 2 quad and the next share a window row: bias entries o and o + 1, one pair.
                int32_t offset;
                if constexpr (kTileStartsRow)
                {
                    constexpr int32_t kW = kTileStartsRow ? kWindow : 1;
                    offset = t * (kKeyTile / kW) * (2 * kW - 1) + (8 * nt / kW) * (2 * kW - 1) + (8 * nt) % kW;
                }
                else
                {
                    offset = groupOffset[t * kScoreTiles + nt];
                }
                float2 const upper = biasPairs[biasBase[0] + offset];
                float2 const lower = biasPairs[lowerBias + offset];
                s[nt][0] = upper.x;
                s[nt][1] = upper.y;
                s[nt][2] = lower.x;
                s[nt][3] = lower.y;
            }
#pragma unroll
            for (int32_t ks = 0; ks < kChannelSteps; ++ks)
            {
#pragma unroll
                for (int32_t np = 0; np < kScoreTiles / 2; ++np)
                {
                    uint32_t b[4];
                    loadMatrices<true>(b, buffer + keyLane + 16 * ks * kStride + 16 * np);
                    mmaF16F32(s[2 * np], qFragment[ks], b[0], b[1]);
                    mmaF16F32(s[2 * np + 1], qFragment[ks], b[2], b[3]);
                }
            }

            // Online softmax; each row's max is shared by its 4 lanes. Rescale only where a maximum grew.
            float m[2];
#pragma unroll
            for (int32_t r = 0; r < 2; ++r)
            {
                m[r] = rowMax[r];
#pragma unroll
                for (int32_t nt = 0; nt < kScoreTiles; ++nt)
                {
                    m[r] = fmaxf(m[r], fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
                }
                m[r] = fmaxf(m[r], shuffleXor(m[r], 1));
                m[r] = fmaxf(m[r], shuffleXor(m[r], 2));
            }
#ifdef ESC_SASS_PROBE
            s[0][0] = exp2Approx(s[0][0]); // one extra MUFU per tile: the test of validation/kernel_sass.py
#endif
            if (anyInWarp(m[0] > rowMax[0] || m[1] > rowMax[1]))
            {
                float const correction[2] = {exp2Approx((rowMax[0] - m[0]) * scale), // 0 at -inf
                    exp2Approx((rowMax[1] - m[1]) * scale)};
#pragma unroll
                for (int32_t i = 0; i < 4; ++i)
                {
                    rowSum[i] *= correction[i / 2];
#pragma unroll
                    for (int32_t nt = 0; nt < kChannelTiles; ++nt)
                    {
                        acc[nt][i] *= correction[i / 2];
                    }
                }
                rowMax[0] = m[0];
                rowMax[1] = m[1];
            }

            // O += P V and the row sums += P 1: score n-tiles 2 kk and 2 kk + 1 form the A fragment of k-step kk.
            float const shift[2] = {-rowMax[0] * scale, -rowMax[1] * scale};
#pragma unroll
            for (int32_t kk = 0; kk < kKeySteps; ++kk)
            {
                uint32_t p[4];
#pragma unroll
                for (int32_t h = 0; h < 2; ++h)
                {
                    float const* const pair = s[2 * kk + h];
                    p[2 * h] = packHalf2(
                        exp2Approx(fmaf(pair[0], scale, shift[0])), exp2Approx(fmaf(pair[1], scale, shift[0])));
                    p[2 * h + 1] = packHalf2(
                        exp2Approx(fmaf(pair[2], scale, shift[1])), exp2Approx(fmaf(pair[3], scale, shift[1])));
                }
#pragma unroll
                for (int32_t ntp = 0; ntp < kChannelTiles / 2; ++ntp)
                {
                    uint32_t b[4];
                    loadMatrices<false>(b, buffer + valueLane + 16 * ntp * kStride + 16 * kk);
                    mmaF16F32(acc[2 * ntp], p, b[0], b[1]);
                    mmaF16F32(acc[2 * ntp + 1], p, b[2], b[3]);
                }
                mmaF16F32(rowSum, p, kHALF2_ONES, kHALF2_ONES);
            }
        }
    };
    if (wholeGroups)
    {
        mainLoop(std::true_type{});
    }
    else
    {
        mainLoop(std::false_type{});
    }

    if (!warpActive)
    {
        return;
    }
    float const inverse[2] = {1.F / rowSum[0], 1.F / rowSum[2]}; // >= 1: the maximum contributes exp2(0)
    // The block's and thread's place again, from indices hidden from the optimiser: cheaper than keeping the
    // prologue's values through the loop (ptxas would spill them).
    BlockWindow<__half> const again = locateBlock<__half, kHeadSize>(
        qkv, out, g, opaqueValue(blockX()), opaqueValue(blockY()), opaqueValue(blockZ()));
    int32_t const thread = opaqueValue(threadRank());
    int32_t const outQuery = again.queryBlock * blockQueries + thread / 32 * Tiling::kWarpQueries + thread % 32 / 4;
#pragma unroll
    for (int32_t r = 0; r < 2; ++r)
    {
        int32_t const token = outQuery + 8 * r;
        int32_t const qh = token / w;
        int32_t const qw = token % w;
        if (token >= tokens || again.y0 + qh >= g.height || again.x0 + qw >= g.width)
        {
            continue;
        }
        __half* const pixel = again.out + static_cast<int64_t>(again.y0 + qh) * g.width + (again.x0 + qw);
#pragma unroll
        for (int32_t nt = 0; nt < kChannelTiles; ++nt)
        {
#pragma unroll
            for (int32_t i = 2 * r; i < 2 * r + 2; ++i)
            {
                int32_t const c = 8 * nt + 2 * (thread % 4) + i % 2;
                storeFloat(pixel + c * g.plane, acc[nt][i] * inverse[r]);
            }
        }
    }
}

} // namespace device
} // namespace esc
