/*
 * Pieces both kernel bodies share: element loads/stores in fp32, the reflect index, and the staging of the bias
 * rows a block reads. Written against the primitives of escDevicePrimitives.cuh (or the CPU emulation's).
 */
#pragma once

#include "escWindowAttentionPlan.h"

#include <cmath>
#include <cstdint>
#include <cuda_fp16.h>

namespace esc
{
namespace device
{

constexpr float kLOG2E = 1.4426950408889634F;

ESC_DEVICE int32_t lesser(int32_t a, int32_t b)
{
    return a < b ? a : b;
}

ESC_DEVICE float loadFloat(float const* p)
{
    return loadReadOnly(p);
}

ESC_DEVICE float loadFloat(__half const* p)
{
    return __half2float(loadReadOnly(p));
}

ESC_DEVICE void storeFloat(float* p, float v)
{
    *p = v;
}

ESC_DEVICE void storeFloat(__half* p, float v)
{
    *p = __float2half_rn(v);
}

//! numpy/torch 'reflect' padding at the far end: n, n+1, ... read n-2, n-3, ... (valid while i <= 2n - 2).
ESC_DEVICE int32_t reflectIndex(int32_t i, int32_t n)
{
    return i < n ? i : 2 * (n - 1) - i;
}

//! Offset of pixel (y, x) of the padded map in its source plane (reflected back into H x W).
ESC_DEVICE int64_t sourcePixel(int32_t y, int32_t x, WindowGeometry const& g)
{
    return static_cast<int64_t>(reflectIndex(y, g.height)) * g.width + reflectIndex(x, g.width);
}

//! What one thread block of either body works on, from its block index: grid x = (window, query block),
//! y = head, z = batch.
template <typename T>
struct BlockWindow
{
    int32_t queryBlock; //!< which block of queries of the window
    int32_t head;
    int32_t y0;         //!< the window's top-left pixel in the padded map
    int32_t x0;
    T const* q;         //!< first q plane of this (batch, head); channel c of the head is c planes further
    T const* k;
    T const* v;
    T* out;             //!< first output plane of this (batch, head)
};

template <typename T, int32_t kHeadSize>
ESC_DEVICE BlockWindow<T> locateBlock(
    T const* qkv, T* out, WindowGeometry const& g, int32_t x = blockX(), int32_t head = blockY(), int32_t batch = blockZ())
{
    int32_t const windowIndex = x / g.queryBlocks;
    int64_t const channels = static_cast<int64_t>(g.numHeads) * kHeadSize;
    T const* const q = qkv + (batch * 3 * channels + head * kHeadSize) * g.plane;
    return BlockWindow<T>{x % g.queryBlocks, head, (windowIndex / g.windowsX) * g.window,
        (windowIndex % g.windowsX) * g.window, q, q + channels * g.plane, q + 2 * channels * g.plane,
        out + (batch * channels + head * kHeadSize) * g.plane};
}

//! The bias rows of one head that queries [firstQuery, lastQuery] of a window can read, log2(e)-scaled, into
//! `bias` (row-major, 2w-1 floats per row). Returns the first table row staged; the caller synchronises.
template <typename TableT>
ESC_DEVICE int32_t stageBiasRows(
    TableT const* table, int32_t head, int32_t firstQuery, int32_t lastQuery, int32_t w, float* bias)
{
    int32_t const side = 2 * w - 1;
    // Row of (query row qh, key row kh) is kh - qh + w - 1: from w - 1 - lastRow up to 2w - 2 - firstRow.
    int32_t const firstRow = w - 1 - lastQuery / w;
    int32_t const rowCount = w + lastQuery / w - firstQuery / w;
    TableT const* const rows = table + (static_cast<int64_t>(head) * side + firstRow) * side;
    for (int32_t e = threadRank(); e < rowCount * side; e += blockSize())
    {
        bias[e] = loadFloat(rows + e) * kLOG2E;
    }
    return firstRow;
}

} // namespace device
} // namespace esc
