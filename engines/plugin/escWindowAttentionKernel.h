/*
 * Fused window self-attention of ESC (one call per block), on an NCHW qkv map.
 *
 * out[b, h*d + c, y, x] = sum_j softmax_j(q_i . k_j / sqrt(d) + table[h, rel(i, j)]) v_j[c]
 *
 * for every pixel (y, x) of the original H x W map, where i is the pixel's token in its w x w window of the
 * bottom/right reflect-padded map, j runs over the tokens of the same window, and channels are ordered
 * (qkv heads c): q = h*d + c, k = C + h*d + c, v = 2C + h*d + c with C = heads * d. Padding, windowing, the bias
 * lookup and the crop are index arithmetic; the N x N scores (N = w*w) live only in registers.
 *
 * This header includes only CUDA headers so that any host code (the TensorRT plugin, a ctypes user, a test)
 * can include it.
 */
#pragma once

#include <cstdint>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

namespace esc
{

//! Element types understood by the launchers; the values are those of the C entry point's dtype arguments.
enum class EscDataType : int32_t
{
    kFLOAT32 = 0,
    kFLOAT16 = 1,
};

constexpr int32_t kMIN_WINDOW_SIZE = 8;
constexpr int32_t kMAX_WINDOW_SIZE = 64;
//! Head sizes (channels per head) with a compiled kernel.
constexpr int32_t kHEAD_SIZE_SMALL = 16;
constexpr int32_t kHEAD_SIZE_LARGE = 32;

//! Bottom/right padding that makes `side` a multiple of `windowSize` (the official rule).
constexpr int32_t windowPadding(int32_t side, int32_t windowSize)
{
    return (windowSize - side % windowSize) % windowSize;
}

//! Typed launcher. qkv: [batch, 3 * heads * kHeadSize, height, width]; table: [heads, (2w-1)^2];
//! out: [batch, heads * kHeadSize, height, width]; all dense, row-major, on the current device.
//! Returns cudaErrorInvalidValue for arguments outside the supported range (window size in [8, 64],
//! reflect padding smaller than the side, grid limits), otherwise the status of the launch.
//! Instantiated for (float, float), (__half, float) and (__half, __half), each with head size 16 and 32.
template <typename T, typename TableT, int32_t kHeadSize>
cudaError_t launchWindowAttention(T const* qkv, TableT const* table, T* out, int32_t batch, int32_t numHeads,
    int32_t height, int32_t width, int32_t windowSize, cudaStream_t stream);

//! Runtime dispatch over element type, table type and head size (channels / numHeads); the table type is
//! either kFLOAT32 or the element type. `channels` is C, the number of output channels.
cudaError_t windowAttention(EscDataType dtype, EscDataType tableType, void const* qkv, void const* table, void* out,
    int32_t batch, int32_t channels, int32_t numHeads, int32_t height, int32_t width, int32_t windowSize,
    cudaStream_t stream);

} // namespace esc

extern "C"
{
    //! C entry point for ctypes and other FFI users: dtype and tableType take EscDataType values,
    //! stream is a cudaStream_t (0 for the legacy default stream). Returns a cudaError_t value (0 on success).
    int32_t escWindowAttention(int32_t dtype, int32_t tableType, void const* qkv, void const* table, void* out,
        int32_t batch, int32_t channels, int32_t numHeads, int32_t height, int32_t width, int32_t windowSize,
        void* stream);

    //! Message for a status returned by escWindowAttention (cudaGetErrorString).
    char const* escWindowAttentionErrorString(int32_t status);
}
