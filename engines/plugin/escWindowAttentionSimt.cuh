/*
 * SIMT body of the fused window attention: fp32 math on CUDA cores for fp32 and fp16 tensors, any window size.
 *
 *   - one thread block per (query block, window, head, batch); each thread owns kQueriesPerThread queries of the
 *     window and keeps q, the output accumulator and the softmax statistics (running max, running sum) in fp32
 *     registers;
 *   - keys and values are staged in shared memory kKeyTile tokens at a time, read straight from the NCHW qkv map
 *     with the window offset and the reflect padding applied to the indices (no padded or partitioned copy);
 *   - scores are processed kKeyChunk keys at a time with an online softmax on exp2 (q is pre-scaled by
 *     log2(e)/sqrt(d), the bias by log2(e)), so the N x N scores never leave registers;
 *   - every thread writes its own output pixels straight into [B, C, H, W]; pixels of the padding are skipped.
 */
#pragma once

#include "escWindowAttentionCommon.cuh"

namespace esc
{
namespace device
{

template <typename T, typename TableT, int32_t kHeadSize>
ESC_DEVICE void simtWindowAttention(
    T const* __restrict__ qkv, TableT const* __restrict__ table, T* __restrict__ out, WindowGeometry const g)
{
    using Tiling = SimtTiling<kHeadSize>;
    constexpr int32_t kQPT = Tiling::kQueriesPerThread;
    constexpr int32_t kStride = Tiling::kRowStride;
    constexpr int32_t kKeyTile = Tiling::kKeyTile;
    constexpr int32_t kKeyChunk = Tiling::kKeyChunk;
    constexpr int32_t kVec = kHeadSize / 4;

    // Shared memory: K tile, V tile (kKeyTile x kStride floats each), the tile's bias offsets, the bias rows.
    float* const kTile = static_cast<float*>(sharedMemory());
    float* const vTile = kTile + kKeyTile * kStride;
    int32_t* const keyOffset = reinterpret_cast<int32_t*>(vTile + kKeyTile * kStride);
    float* const bias = reinterpret_cast<float*>(keyOffset + kKeyTile);

    int32_t const w = g.window;
    int32_t const tokens = w * w;
    int32_t const side = 2 * w - 1;
    BlockWindow<T> const block = locateBlock<T, kHeadSize>(qkv, out, g);
    int32_t const y0 = block.y0;
    int32_t const x0 = block.x0;
    int32_t const threads = blockSize();
    int32_t const tid = threadRank();


    int32_t const firstQuery = block.queryBlock * threads * kQPT;
    int32_t const lastQuery = lesser(tokens, firstQuery + threads * kQPT) - 1;
    int32_t const firstRow = stageBiasRows(table, block.head, firstQuery, lastQuery, w, bias);

    // This thread's queries, pre-scaled so that scores come out in log2 units.
    float const qScale = kLOG2E / sqrtf(static_cast<float>(kHeadSize));
    float q[kQPT][kHeadSize];
    float acc[kQPT][kHeadSize];
    float rowMax[kQPT];
    float rowSum[kQPT];
    int32_t biasBase[kQPT];
    int64_t outPixel[kQPT]; // y * width + x, or -1 where nothing is stored (padding, or no query)
#pragma unroll
    for (int32_t r = 0; r < kQPT; ++r)
    {
        int32_t const token = firstQuery + r * threads + tid;
        int32_t const t = lesser(token, lastQuery); // spare threads compute a valid token and store nothing
        int32_t const qh = t / w;
        int32_t const qw = t % w;
        int32_t const y = y0 + qh;
        int32_t const x = x0 + qw;
        bool const stores = token < tokens && y < g.height && x < g.width;
        outPixel[r] = stores ? static_cast<int64_t>(y) * g.width + x : -1;
        int64_t const src = sourcePixel(y, x, g);
#pragma unroll
        for (int32_t c = 0; c < kHeadSize; ++c)
        {
            q[r][c] = loadFloat(block.q + c * g.plane + src) * qScale;
            acc[r][c] = 0.F;
        }
        biasBase[r] = (w - 1 - qh - firstRow) * side + (w - 1 - qw);
        rowMax[r] = -INFINITY;
        rowSum[r] = 0.F;
    }

    for (int32_t k0 = 0; k0 < tokens; k0 += kKeyTile)
    {
        int32_t const keys = lesser(kKeyTile, tokens - k0);
        syncBlock(); // every thread is done with the previous tile (and the bias rows are staged)

        // Stage K and V: 4 channels of one key per item; consecutive threads read consecutive pixels.
        for (int32_t e = tid; e < kKeyTile * kVec; e += threads)
        {
            int32_t const jt = e % kKeyTile;
            int32_t const c = (e / kKeyTile) * 4;
            float4 kv = make_float4(0.F, 0.F, 0.F, 0.F); // zeros past the last key keep 0 * v finite
            float4 vv = kv;
            if (jt < keys)
            {
                int32_t const j = k0 + jt;
                int64_t const src = sourcePixel(y0 + j / w, x0 + j % w, g);
                T const* const kp = block.k + c * g.plane + src;
                T const* const vp = block.v + c * g.plane + src;
                kv = make_float4(
                    loadFloat(kp), loadFloat(kp + g.plane), loadFloat(kp + 2 * g.plane), loadFloat(kp + 3 * g.plane));
                vv = make_float4(
                    loadFloat(vp), loadFloat(vp + g.plane), loadFloat(vp + 2 * g.plane), loadFloat(vp + 3 * g.plane));
            }
            *reinterpret_cast<float4*>(kTile + jt * kStride + c) = kv;
            *reinterpret_cast<float4*>(vTile + jt * kStride + c) = vv;
        }
        for (int32_t jt = tid; jt < kKeyTile; jt += threads)
        {
            int32_t const j = k0 + jt;
            keyOffset[jt] = jt < keys ? (j / w) * side + j % w : 0;
        }
        syncBlock();

        for (int32_t c0 = 0; c0 < keys; c0 += kKeyChunk)
        {
            // Scores of kKeyChunk keys (log2 units), -inf past the last key.
            float s[kQPT][kKeyChunk];
#pragma unroll
            for (int32_t u = 0; u < kKeyChunk; ++u)
            {
                float const* const kRow = kTile + (c0 + u) * kStride;
#pragma unroll
                for (int32_t r = 0; r < kQPT; ++r)
                {
                    s[r][u] = 0.F;
                }
#pragma unroll
                for (int32_t v4 = 0; v4 < kVec; ++v4)
                {
                    float4 const kk = *reinterpret_cast<float4 const*>(kRow + 4 * v4);
#pragma unroll
                    for (int32_t r = 0; r < kQPT; ++r)
                    {
                        s[r][u] = fmaf(q[r][4 * v4 + 0], kk.x, s[r][u]);
                        s[r][u] = fmaf(q[r][4 * v4 + 1], kk.y, s[r][u]);
                        s[r][u] = fmaf(q[r][4 * v4 + 2], kk.z, s[r][u]);
                        s[r][u] = fmaf(q[r][4 * v4 + 3], kk.w, s[r][u]);
                    }
                }
                bool const valid = c0 + u < keys;
                int32_t const offset = keyOffset[c0 + u];
#pragma unroll
                for (int32_t r = 0; r < kQPT; ++r)
                {
                    s[r][u] = valid ? s[r][u] + bias[biasBase[r] + offset] : -INFINITY;
                }
            }

            // Online softmax: rescale the running sum and accumulator once per chunk.
#pragma unroll
            for (int32_t r = 0; r < kQPT; ++r)
            {
                float m = rowMax[r];
#pragma unroll
                for (int32_t u = 0; u < kKeyChunk; ++u)
                {
                    m = fmaxf(m, s[r][u]);
                }
                float const correction = exp2Approx(rowMax[r] - m); // 0 on the first chunk (rowMax = -inf)
                rowMax[r] = m;
                rowSum[r] *= correction;
#pragma unroll
                for (int32_t c = 0; c < kHeadSize; ++c)
                {
                    acc[r][c] *= correction;
                }
#pragma unroll
                for (int32_t u = 0; u < kKeyChunk; ++u)
                {
                    s[r][u] = exp2Approx(s[r][u] - m);
                    rowSum[r] += s[r][u];
                }
            }

#pragma unroll
            for (int32_t u = 0; u < kKeyChunk; ++u)
            {
                float const* const vRow = vTile + (c0 + u) * kStride;
#pragma unroll
                for (int32_t v4 = 0; v4 < kVec; ++v4)
                {
                    float4 const vv = *reinterpret_cast<float4 const*>(vRow + 4 * v4);
#pragma unroll
                    for (int32_t r = 0; r < kQPT; ++r)
                    {
                        acc[r][4 * v4 + 0] = fmaf(s[r][u], vv.x, acc[r][4 * v4 + 0]);
                        acc[r][4 * v4 + 1] = fmaf(s[r][u], vv.y, acc[r][4 * v4 + 1]);
                        acc[r][4 * v4 + 2] = fmaf(s[r][u], vv.z, acc[r][4 * v4 + 2]);
                        acc[r][4 * v4 + 3] = fmaf(s[r][u], vv.w, acc[r][4 * v4 + 3]);
                    }
                }
            }
        }
    }

#pragma unroll
    for (int32_t r = 0; r < kQPT; ++r)
    {
        if (outPixel[r] >= 0)
        {
            float const inv = 1.F / rowSum[r]; // rowSum >= 1: the maximum contributes exp2(0)
#pragma unroll
            for (int32_t c = 0; c < kHeadSize; ++c)
            {
                storeFloat(block.out + c * g.plane + outPixel[r], acc[r][c] * inv);
            }
        }
    }
}

} // namespace device
} // namespace esc
