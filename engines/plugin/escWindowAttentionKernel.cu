/*
 * Fused window self-attention of ESC: see escWindowAttentionKernel.h for the function computed.
 *
 * Design (FlashAttention-style, SIMT, fp32 math for fp16 and fp32 tensors):
 *   - one thread block per (query block, window, head, batch); each thread owns kQueriesPerThread queries of the
 *     window and keeps q, the output accumulator and the softmax statistics (running max, running sum) in fp32
 *     registers;
 *   - keys and values are staged in shared memory kKEY_TILE tokens at a time, read straight from the NCHW qkv map
 *     with the window offset and the reflect padding applied to the indices (no padded or partitioned copy);
 *   - the bias rows the block needs are staged once from the (heads, (2w-1)^2) table and looked up per score;
 *   - scores are processed kKEY_CHUNK keys at a time with an online softmax on exp2 (q is pre-scaled by
 *     log2(e)/sqrt(d), the bias by log2(e)), so the N x N scores never leave registers;
 *   - every thread writes its own output pixels straight into [B, C, H, W]; pixels of the padding are skipped.
 */
#include "escWindowAttentionKernel.h"

#include <climits>

namespace esc
{
namespace
{

constexpr int32_t kMAX_THREADS = 128; //!< threads per block (fewer for windows with fewer tokens)
constexpr int32_t kKEY_TILE = 64;     //!< keys staged in shared memory per step
constexpr int32_t kKEY_CHUNK = 8;     //!< keys per online-softmax update
constexpr int32_t kMAX_GRID_YZ = 65535;
constexpr float kLOG2E = 1.4426950408889634F;

static_assert(kKEY_TILE % kKEY_CHUNK == 0, "a chunk must not straddle two tiles");

template <int32_t kHeadSize>
struct Tiling
{
    static_assert(kHeadSize % 4 == 0, "head size must be a multiple of 4 (float4 staging)");
    //! Two queries per thread halve the shared-memory reads per score where the registers allow it.
    static constexpr int32_t kQueriesPerThread = kHeadSize <= 16 ? 2 : 1;
    //! Floats per staged key: 4 more than the head size keeps float4 alignment and makes the float4 stores of
    //! 8 consecutive keys hit 8 distinct 4-bank groups.
    static constexpr int32_t kRowStride = kHeadSize + 4;
    //! Resident blocks per SM asked of ptxas (__launch_bounds__): 4 caps registers at 128 per thread, which head
    //! size 16 fits without spills; head size 32 needs more (ptxas spilled at 128 for sm_80..89), 3 allows 168.
    static constexpr int32_t kMinBlocksPerSm = kHeadSize <= 16 ? 4 : 3;
};

struct WindowGeometry
{
    int64_t plane;       //!< height * width
    int32_t numHeads;
    int32_t height;
    int32_t width;
    int32_t window;      //!< w
    int32_t windowsX;    //!< windows per padded row
    int32_t queryBlocks; //!< thread blocks per window
};

constexpr int32_t ceilDiv(int32_t a, int32_t b)
{
    return (a + b - 1) / b;
}

__device__ __forceinline__ float loadFloat(float const* p)
{
    return __ldg(p);
}

__device__ __forceinline__ float loadFloat(__half const* p)
{
    return __half2float(__ldg(p));
}

__device__ __forceinline__ void storeFloat(float* p, float v)
{
    *p = v;
}

__device__ __forceinline__ void storeFloat(__half* p, float v)
{
    *p = __float2half_rn(v);
}

//! 2^x on the special function unit; exp2(-inf) = 0.
__device__ __forceinline__ float fastExp2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

//! numpy/torch 'reflect' padding at the far end: n, n+1, ... read n-2, n-3, ... (valid while i <= 2n - 2).
__device__ __forceinline__ int32_t reflectIndex(int32_t i, int32_t n)
{
    return i < n ? i : 2 * (n - 1) - i;
}

template <typename T, typename TableT, int32_t kHeadSize>
__global__ void __launch_bounds__(kMAX_THREADS, Tiling<kHeadSize>::kMinBlocksPerSm) windowAttentionKernel(
    T const* __restrict__ qkv, TableT const* __restrict__ table, T* __restrict__ out, WindowGeometry const g)
{
    constexpr int32_t kQPT = Tiling<kHeadSize>::kQueriesPerThread;
    constexpr int32_t kStride = Tiling<kHeadSize>::kRowStride;
    constexpr int32_t kVec = kHeadSize / 4;

    // Shared memory: K tile, V tile (kKEY_TILE x kStride floats each), the tile's bias offsets, the bias rows.
    extern __shared__ float4 sharedRaw[];
    float* const kTile = reinterpret_cast<float*>(sharedRaw);
    float* const vTile = kTile + kKEY_TILE * kStride;
    int32_t* const keyOffset = reinterpret_cast<int32_t*>(vTile + kKEY_TILE * kStride);
    float* const bias = reinterpret_cast<float*>(keyOffset + kKEY_TILE);

    int32_t const w = g.window;
    int32_t const tokens = w * w;
    int32_t const side = 2 * w - 1;
    int32_t const queryBlock = static_cast<int32_t>(blockIdx.x) % g.queryBlocks;
    int32_t const windowIndex = static_cast<int32_t>(blockIdx.x) / g.queryBlocks;
    int32_t const y0 = (windowIndex / g.windowsX) * w;
    int32_t const x0 = (windowIndex % g.windowsX) * w;
    int32_t const head = static_cast<int32_t>(blockIdx.y);
    int32_t const batch = static_cast<int32_t>(blockIdx.z);
    int32_t const channels = g.numHeads * kHeadSize;
    int32_t const threads = static_cast<int32_t>(blockDim.x);
    int32_t const tid = static_cast<int32_t>(threadIdx.x);

    // First channel plane of q, k, v and out for this (batch, head); channel c of the head is c planes further.
    T const* const qBase = qkv + (static_cast<int64_t>(batch) * 3 * channels + head * kHeadSize) * g.plane;
    T const* const kBase = qBase + static_cast<int64_t>(channels) * g.plane;
    T const* const vBase = kBase + static_cast<int64_t>(channels) * g.plane;
    T* const outBase = out + (static_cast<int64_t>(batch) * channels + head * kHeadSize) * g.plane;

    // Bias rows read by this block: row = kh - qh + w - 1 for every key row kh and this block's query rows qh.
    int32_t const firstQuery = queryBlock * threads * kQPT;
    int32_t const lastQuery = min(tokens, firstQuery + threads * kQPT) - 1;
    int32_t const firstRow = w - 1 - lastQuery / w;
    int32_t const rowCount = w + lastQuery / w - firstQuery / w;
    TableT const* const tableRows = table + (static_cast<int64_t>(head) * side + firstRow) * side;
    for (int32_t e = tid; e < rowCount * side; e += threads)
    {
        bias[e] = loadFloat(tableRows + e) * kLOG2E;
    }

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
        int32_t const t = min(token, lastQuery); // spare threads compute a valid token and store nothing
        int32_t const qh = t / w;
        int32_t const qw = t % w;
        int32_t const y = y0 + qh;
        int32_t const x = x0 + qw;
        bool const stores = token < tokens && y < g.height && x < g.width;
        outPixel[r] = stores ? static_cast<int64_t>(y) * g.width + x : -1;
        int64_t const src = static_cast<int64_t>(reflectIndex(y, g.height)) * g.width + reflectIndex(x, g.width);
#pragma unroll
        for (int32_t c = 0; c < kHeadSize; ++c)
        {
            q[r][c] = loadFloat(qBase + c * g.plane + src) * qScale;
            acc[r][c] = 0.F;
        }
        biasBase[r] = (w - 1 - qh - firstRow) * side + (w - 1 - qw);
        rowMax[r] = -INFINITY;
        rowSum[r] = 0.F;
    }

    for (int32_t k0 = 0; k0 < tokens; k0 += kKEY_TILE)
    {
        int32_t const keys = min(kKEY_TILE, tokens - k0);
        __syncthreads(); // every thread is done with the previous tile

        // Stage K and V: 4 channels of one key per item; consecutive threads read consecutive pixels.
        for (int32_t e = tid; e < kKEY_TILE * kVec; e += threads)
        {
            int32_t const jt = e % kKEY_TILE;
            int32_t const c = (e / kKEY_TILE) * 4;
            float4 kv = make_float4(0.F, 0.F, 0.F, 0.F); // zeros past the last key keep 0 * v finite
            float4 vv = kv;
            if (jt < keys)
            {
                int32_t const j = k0 + jt;
                int64_t const src = static_cast<int64_t>(reflectIndex(y0 + j / w, g.height)) * g.width
                    + reflectIndex(x0 + j % w, g.width);
                T const* const kp = kBase + c * g.plane + src;
                T const* const vp = vBase + c * g.plane + src;
                kv = make_float4(
                    loadFloat(kp), loadFloat(kp + g.plane), loadFloat(kp + 2 * g.plane), loadFloat(kp + 3 * g.plane));
                vv = make_float4(
                    loadFloat(vp), loadFloat(vp + g.plane), loadFloat(vp + 2 * g.plane), loadFloat(vp + 3 * g.plane));
            }
            *reinterpret_cast<float4*>(kTile + jt * kStride + c) = kv;
            *reinterpret_cast<float4*>(vTile + jt * kStride + c) = vv;
        }
        for (int32_t jt = tid; jt < kKEY_TILE; jt += threads)
        {
            int32_t const j = k0 + jt;
            keyOffset[jt] = jt < keys ? (j / w) * side + j % w : 0;
        }
        __syncthreads();

        for (int32_t c0 = 0; c0 < keys; c0 += kKEY_CHUNK)
        {
            // Scores of kKEY_CHUNK keys (log2 units), -inf past the last key.
            float s[kQPT][kKEY_CHUNK];
#pragma unroll
            for (int32_t u = 0; u < kKEY_CHUNK; ++u)
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
                for (int32_t u = 0; u < kKEY_CHUNK; ++u)
                {
                    m = fmaxf(m, s[r][u]);
                }
                float const correction = fastExp2(rowMax[r] - m); // 0 on the first chunk (rowMax = -inf)
                rowMax[r] = m;
                rowSum[r] *= correction;
#pragma unroll
                for (int32_t c = 0; c < kHeadSize; ++c)
                {
                    acc[r][c] *= correction;
                }
#pragma unroll
                for (int32_t u = 0; u < kKEY_CHUNK; ++u)
                {
                    s[r][u] = fastExp2(s[r][u] - m);
                    rowSum[r] += s[r][u];
                }
            }

#pragma unroll
            for (int32_t u = 0; u < kKEY_CHUNK; ++u)
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
                storeFloat(outBase + c * g.plane + outPixel[r], acc[r][c] * inv);
            }
        }
    }
}

template <typename T, typename TableT>
cudaError_t dispatchHeadSize(int32_t headSize, void const* qkv, void const* table, void* out, int32_t batch,
    int32_t numHeads, int32_t height, int32_t width, int32_t windowSize, cudaStream_t stream)
{
    auto const* typedQkv = static_cast<T const*>(qkv);
    auto const* typedTable = static_cast<TableT const*>(table);
    auto* typedOut = static_cast<T*>(out);
    switch (headSize)
    {
    case kHEAD_SIZE_SMALL:
        return launchWindowAttention<T, TableT, kHEAD_SIZE_SMALL>(
            typedQkv, typedTable, typedOut, batch, numHeads, height, width, windowSize, stream);
    case kHEAD_SIZE_LARGE:
        return launchWindowAttention<T, TableT, kHEAD_SIZE_LARGE>(
            typedQkv, typedTable, typedOut, batch, numHeads, height, width, windowSize, stream);
    default: return cudaErrorInvalidValue;
    }
}

} // namespace

template <typename T, typename TableT, int32_t kHeadSize>
cudaError_t launchWindowAttention(T const* qkv, TableT const* table, T* out, int32_t batch, int32_t numHeads,
    int32_t height, int32_t width, int32_t windowSize, cudaStream_t stream)
{
    if (batch < 0 || numHeads < 1 || height < 0 || width < 0 || windowSize < kMIN_WINDOW_SIZE
        || windowSize > kMAX_WINDOW_SIZE)
    {
        return cudaErrorInvalidValue;
    }
    if (batch == 0 || height == 0 || width == 0)
    {
        return cudaSuccess; // empty output
    }
    if (qkv == nullptr || table == nullptr || out == nullptr || windowPadding(height, windowSize) >= height
        || windowPadding(width, windowSize) >= width)
    {
        return cudaErrorInvalidValue; // reflect padding needs pad < side
    }

    constexpr int32_t kQPT = Tiling<kHeadSize>::kQueriesPerThread;
    constexpr int32_t kStride = Tiling<kHeadSize>::kRowStride;
    int32_t const w = windowSize;
    int32_t const tokens = w * w;
    int32_t const side = 2 * w - 1;
    int32_t const windowsY = ceilDiv(height, w);
    int32_t const windowsX = ceilDiv(width, w);
    int32_t const threads = min(kMAX_THREADS, ceilDiv(ceilDiv(tokens, kQPT), 32) * 32);
    int32_t const queriesPerBlock = threads * kQPT;
    int32_t const queryBlocks = ceilDiv(tokens, queriesPerBlock);
    int64_t const blocksX = static_cast<int64_t>(windowsY) * windowsX * queryBlocks;
    if (blocksX > INT32_MAX || numHeads > kMAX_GRID_YZ || batch > kMAX_GRID_YZ)
    {
        return cudaErrorInvalidValue;
    }

    // Largest bias-row count of any block: w rows plus the query rows a block spans beyond its first.
    int32_t const tableRows = min(side, w + (queriesPerBlock + w - 2) / w);
    size_t const sharedBytes = 2 * kKEY_TILE * kStride * sizeof(float) + kKEY_TILE * sizeof(int32_t)
        + static_cast<size_t>(tableRows) * side * sizeof(float);
    auto* const kernel = windowAttentionKernel<T, TableT, kHeadSize>;
    if (sharedBytes > 48 * 1024)
    {
        cudaError_t const status
            = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(sharedBytes));
        if (status != cudaSuccess)
        {
            return status;
        }
    }

    WindowGeometry const geometry{static_cast<int64_t>(height) * width, numHeads, height, width, w, windowsX,
        queryBlocks};
    dim3 const grid(static_cast<uint32_t>(blocksX), static_cast<uint32_t>(numHeads), static_cast<uint32_t>(batch));
    kernel<<<grid, threads, sharedBytes, stream>>>(qkv, table, out, geometry);
    return cudaGetLastError();
}

#define ESC_INSTANTIATE_LAUNCHER(T, TableT, kHeadSize)                                                               \
    template cudaError_t launchWindowAttention<T, TableT, kHeadSize>(T const*, TableT const*, T*, int32_t, int32_t,  \
        int32_t, int32_t, int32_t, cudaStream_t);

ESC_INSTANTIATE_LAUNCHER(float, float, 16)
ESC_INSTANTIATE_LAUNCHER(float, float, 32)
ESC_INSTANTIATE_LAUNCHER(__half, float, 16)
ESC_INSTANTIATE_LAUNCHER(__half, float, 32)
ESC_INSTANTIATE_LAUNCHER(__half, __half, 16)
ESC_INSTANTIATE_LAUNCHER(__half, __half, 32)
#undef ESC_INSTANTIATE_LAUNCHER

cudaError_t windowAttention(EscDataType dtype, EscDataType tableType, void const* qkv, void const* table, void* out,
    int32_t batch, int32_t channels, int32_t numHeads, int32_t height, int32_t width, int32_t windowSize,
    cudaStream_t stream)
{
    if (numHeads < 1 || channels < 1 || channels % numHeads != 0)
    {
        return cudaErrorInvalidValue;
    }
    int32_t const headSize = channels / numHeads;
    if (dtype == EscDataType::kFLOAT32 && tableType == EscDataType::kFLOAT32)
    {
        return dispatchHeadSize<float, float>(
            headSize, qkv, table, out, batch, numHeads, height, width, windowSize, stream);
    }
    if (dtype == EscDataType::kFLOAT16 && tableType == EscDataType::kFLOAT32)
    {
        return dispatchHeadSize<__half, float>(
            headSize, qkv, table, out, batch, numHeads, height, width, windowSize, stream);
    }
    if (dtype == EscDataType::kFLOAT16 && tableType == EscDataType::kFLOAT16)
    {
        return dispatchHeadSize<__half, __half>(
            headSize, qkv, table, out, batch, numHeads, height, width, windowSize, stream);
    }
    return cudaErrorInvalidValue;
}

} // namespace esc

extern "C" int32_t escWindowAttention(int32_t dtype, int32_t tableType, void const* qkv, void const* table, void* out,
    int32_t batch, int32_t channels, int32_t numHeads, int32_t height, int32_t width, int32_t windowSize, void* stream)
{
    return static_cast<int32_t>(esc::windowAttention(static_cast<esc::EscDataType>(dtype),
        static_cast<esc::EscDataType>(tableType), qkv, table, out, batch, channels, numHeads, height, width,
        windowSize, static_cast<cudaStream_t>(stream)));
}

extern "C" char const* escWindowAttentionErrorString(int32_t status)
{
    return cudaGetErrorString(static_cast<cudaError_t>(status));
}
