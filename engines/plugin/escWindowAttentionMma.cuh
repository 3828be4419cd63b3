/*
 * Tensor-core body of the fused window attention (fp16 tensors, window size a multiple of 8, sm_80+).
 *
 * FlashAttention-2 on mma.sync m16n8k16 (fp16 inputs, fp32 accumulation):
 *   - one thread block per (query block, window, head, batch), up to 8 warps; each warp owns 16 queries and holds
 *     them as mma A fragments for the whole window;
 *   - K ([key][channel]) and V ([channel][key]) are staged kKeyTile keys at a time in shared memory, read straight
 *     from the NCHW qkv map with the reflect padding applied to the indices;
 *   - per tile each warp computes its 16 x kKeyTile scores with mma, scales them and adds the log2(e)-scaled bias
 *     in fp32, updates the running max/sum (fp32, shared by the 4 lanes of a row through two shuffles), packs the
 *     probabilities to fp16 A fragments (the C layout of two n-tiles is the A layout of one k-step) and
 *     accumulates P V with mma; the N x N scores live only in registers;
 *   - the accumulators are normalised once at the end and stored straight into [B, C, H, W] (padding skipped).
 *
 * Fragment layout (PTX ISA, mma.m16n8k16, f16): lane = 4 * group + quad; A registers hold rows group / group + 8
 * and columns 2 * quad (+1) / 2 * quad + 8 (+1); B registers hold rows (k) 2 * quad (+1) / 2 * quad + 8 (+1) of
 * column (n) group; C registers hold rows group / group + 8 and columns 2 * quad (+1).
 */
#pragma once

#include "escWindowAttentionCommon.cuh"

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

//! Two consecutive halves of shared memory as one register (the index is even).
ESC_DEVICE uint32_t loadHalf2(__half const* p)
{
    return *reinterpret_cast<uint32_t const*>(p);
}

template <typename TableT, int32_t kHeadSize>
ESC_DEVICE void mmaWindowAttention(
    __half const* __restrict__ qkv, TableT const* __restrict__ table, __half* __restrict__ out, WindowGeometry const g)
{
    using Tiling = MmaTiling<kHeadSize>;
    constexpr int32_t kKeyTile = Tiling::kKeyTile;
    constexpr int32_t kKeyStride = Tiling::kKeyStride;
    constexpr int32_t kValueStride = Tiling::kValueStride;
    constexpr int32_t kScoreTiles = kKeyTile / 8; // n-tiles of S per key tile
    constexpr int32_t kKeySteps = kKeyTile / 16;  // k-steps of P V per key tile
    constexpr int32_t kChannelSteps = kHeadSize / 16; // k-steps of Q K^T
    constexpr int32_t kChannelTiles = kHeadSize / 8;  // n-tiles of P V

    // Shared memory: K tile [kKeyTile][kKeyStride], V tile [kHeadSize][kValueStride] (halves), the tile's bias
    // offsets, the bias rows.
    __half* const kTile = static_cast<__half*>(sharedMemory());
    __half* const vTile = kTile + kKeyTile * kKeyStride;
    int32_t* const keyOffset = reinterpret_cast<int32_t*>(vTile + kHeadSize * kValueStride);
    float* const bias = reinterpret_cast<float*>(keyOffset + kKeyTile);

    int32_t const w = g.window;
    int32_t const tokens = w * w;
    int32_t const side = 2 * w - 1;
    BlockWindow<__half> const block = locateBlock<__half, kHeadSize>(qkv, out, g);
    int32_t const y0 = block.y0;
    int32_t const x0 = block.x0;
    int32_t const threads = blockSize();
    int32_t const tid = threadRank();
    int32_t const lane = tid % 32;
    int32_t const group = lane / 4;
    int32_t const quad = lane % 4;


    int32_t const blockQueries = threads / 32 * Tiling::kWarpQueries;
    int32_t const firstQuery = block.queryBlock * blockQueries;
    int32_t const lastQuery = lesser(tokens, firstQuery + blockQueries) - 1;
    int32_t const firstRow = stageBiasRows(table, block.head, firstQuery, lastQuery, w, bias);
    // The plan makes blockQueries divide tokens, so every warp has 16 queries of the window; the check keeps the
    // body correct for any plan (a warp past the window would only help staging).
    int32_t const warpQuery = firstQuery + tid / 32 * Tiling::kWarpQueries;
    bool const warpActive = warpQuery < tokens;

    // This lane's two query rows (group and group + 8 of the warp's 16).
    int32_t biasBase[2];
    int64_t outPixel[2]; // y * width + x, or -1 for padding
    int64_t srcPixel[2];
#pragma unroll
    for (int32_t r = 0; r < 2; ++r)
    {
        int32_t const t = lesser(warpQuery + group + 8 * r, tokens - 1);
        int32_t const qh = t / w;
        int32_t const qw = t % w;
        int32_t const y = y0 + qh;
        int32_t const x = x0 + qw;
        outPixel[r] = y < g.height && x < g.width ? static_cast<int64_t>(y) * g.width + x : -1;
        srcPixel[r] = sourcePixel(y, x, g);
        biasBase[r] = (w - 1 - qh - firstRow) * side + (w - 1 - qw);
    }
    uint32_t qFragment[kChannelSteps][4];
    if (warpActive)
    {
#pragma unroll
        for (int32_t ks = 0; ks < kChannelSteps; ++ks)
        {
            int32_t const c = 16 * ks + 2 * quad;
#pragma unroll
            for (int32_t i = 0; i < 4; ++i)
            {
                int32_t const r = i % 2;       // row group + 8 * r
                int32_t const col = c + 8 * (i / 2);
                __half const* const p = block.q + col * g.plane + srcPixel[r];
                qFragment[ks][i] = packHalf2(__half2float(loadReadOnly(p)), __half2float(loadReadOnly(p + g.plane)));
            }
        }
    }

    float const scoreScale = kLOG2E / sqrtf(static_cast<float>(kHeadSize)); // q k / sqrt(d) in log2 units
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
    float rowMax[2] = {-INFINITY, -INFINITY};
    float rowSum[2] = {0.F, 0.F}; // this lane's share; the 4 lanes of a row are summed at the end

    for (int32_t k0 = 0; k0 < tokens; k0 += kKeyTile)
    {
        syncBlock(); // every warp is done with the previous tile (and the bias rows are staged)

        // Stage K as [key][channel] and V as [channel][key]; consecutive threads read consecutive pixels.
        for (int32_t e = tid; e < kKeyTile * kHeadSize; e += threads)
        {
            int32_t const jt = e % kKeyTile;
            int32_t const c = e / kKeyTile;
            int32_t const j = k0 + jt;
            int64_t const src = sourcePixel(y0 + j / w, x0 + j % w, g) + c * g.plane;
            kTile[jt * kKeyStride + c] = loadReadOnly(block.k + src);
            vTile[c * kValueStride + jt] = loadReadOnly(block.v + src);
        }
        for (int32_t jt = tid; jt < kKeyTile; jt += threads)
        {
            int32_t const j = k0 + jt;
            keyOffset[jt] = (j / w) * side + j % w;
        }
        syncBlock();
        if (!warpActive)
        {
            continue;
        }

        // S = Q K^T for 16 queries x kKeyTile keys, then log2-unit scores with bias.
        float s[kScoreTiles][4];
#pragma unroll
        for (int32_t nt = 0; nt < kScoreTiles; ++nt)
        {
#pragma unroll
            for (int32_t i = 0; i < 4; ++i)
            {
                s[nt][i] = 0.F;
            }
            __half const* const keyRow = kTile + (8 * nt + group) * kKeyStride + 2 * quad;
#pragma unroll
            for (int32_t ks = 0; ks < kChannelSteps; ++ks)
            {
                mmaF16F32(s[nt], qFragment[ks], loadHalf2(keyRow + 16 * ks), loadHalf2(keyRow + 16 * ks + 8));
            }
            // Keys 8 nt + 2 quad and the next one share a window row (w is a multiple of 8): offsets o and o + 1.
            int32_t const offset = keyOffset[8 * nt + 2 * quad];
#pragma unroll
            for (int32_t i = 0; i < 4; ++i)
            {
                s[nt][i] = fmaf(s[nt][i], scoreScale, bias[biasBase[i / 2] + offset + i % 2]);
            }
        }

        // Online softmax; each row's max is shared by its 4 lanes.
        float correction[2];
#pragma unroll
        for (int32_t r = 0; r < 2; ++r)
        {
            float m = rowMax[r];
#pragma unroll
            for (int32_t nt = 0; nt < kScoreTiles; ++nt)
            {
                m = fmaxf(m, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
            }
            m = fmaxf(m, shuffleXor(m, 1));
            m = fmaxf(m, shuffleXor(m, 2));
            correction[r] = exp2Approx(rowMax[r] - m); // 0 on the first tile (rowMax = -inf)
            rowMax[r] = m;
            rowSum[r] *= correction[r];
        }
#pragma unroll
        for (int32_t nt = 0; nt < kChannelTiles; ++nt)
        {
#pragma unroll
            for (int32_t i = 0; i < 4; ++i)
            {
                acc[nt][i] *= correction[i / 2];
            }
        }
#pragma unroll
        for (int32_t nt = 0; nt < kScoreTiles; ++nt)
        {
#pragma unroll
            for (int32_t i = 0; i < 4; ++i)
            {
                s[nt][i] = exp2Approx(s[nt][i] - rowMax[i / 2]);
                rowSum[i / 2] += s[nt][i];
            }
        }

#ifdef ESC_SASS_PROBE
        s[0][0] = exp2Approx(s[0][0]); // one extra MUFU per tile: the test of validation/kernel_sass.py
#endif

        // O += P V: score n-tiles 2 kk and 2 kk + 1 form the A fragment of k-step kk.
#pragma unroll
        for (int32_t kk = 0; kk < kKeySteps; ++kk)
        {
            uint32_t const p[4] = {packHalf2(s[2 * kk][0], s[2 * kk][1]), packHalf2(s[2 * kk][2], s[2 * kk][3]),
                packHalf2(s[2 * kk + 1][0], s[2 * kk + 1][1]), packHalf2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int32_t nt = 0; nt < kChannelTiles; ++nt)
            {
                __half const* const valueRow = vTile + (8 * nt + group) * kValueStride + 16 * kk + 2 * quad;
                mmaF16F32(acc[nt], p, loadHalf2(valueRow), loadHalf2(valueRow + 8));
            }
        }
    }

    if (!warpActive)
    {
        return;
    }
#pragma unroll
    for (int32_t r = 0; r < 2; ++r)
    {
        rowSum[r] += shuffleXor(rowSum[r], 1);
        rowSum[r] += shuffleXor(rowSum[r], 2);
    }
    float const inverse[2] = {1.F / rowSum[0], 1.F / rowSum[1]}; // >= 1: the maximum contributes exp2(0)
#pragma unroll
    for (int32_t nt = 0; nt < kChannelTiles; ++nt)
    {
#pragma unroll
        for (int32_t i = 0; i < 4; ++i)
        {
            int32_t const r = i / 2;
            if (outPixel[r] >= 0)
            {
                int32_t const c = 8 * nt + 2 * quad + i % 2;
                storeFloat(block.out + c * g.plane + outPixel[r], acc[nt][i] * inverse[r]);
            }
        }
    }
}

} // namespace device
} // namespace esc
