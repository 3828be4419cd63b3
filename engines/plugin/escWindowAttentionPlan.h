/*
 * Launch planning for the fused window attention: argument checks, which kernel body runs, its tiling constants,
 * its grid, block and shared memory. Host code (no device code), so that the CUDA launcher and the CPU emulation
 * used by the tests (tests/engines/emulation) check and plan every launch the same way.
 */
#pragma once

#include "escWindowAttentionKernel.h"

#include <cstddef>
#include <cstdint>
#include <cuda_fp16.h>
#include <type_traits>

namespace esc
{

constexpr int32_t ceilDiv(int32_t a, int32_t b)
{
    return (a + b - 1) / b;
}

constexpr int32_t minimum(int32_t a, int32_t b)
{
    return a < b ? a : b;
}

//! Shape of one launch, passed by value to the kernel bodies.
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

//! SIMT body (escWindowAttentionSimt.cuh): fp32 math on CUDA cores, any window size, fp32 and fp16 tensors.
template <int32_t kHeadSize>
struct SimtTiling
{
    static_assert(kHeadSize % 4 == 0, "head size must be a multiple of 4 (float4 staging)");
    static constexpr int32_t kMaxThreads = 128;
    static constexpr int32_t kKeyTile = 64; //!< keys staged in shared memory per step
    static constexpr int32_t kKeyChunk = 8; //!< keys per online-softmax update
    //! Two queries per thread halve the shared-memory reads per score where the registers allow it.
    static constexpr int32_t kQueriesPerThread = kHeadSize <= 16 ? 2 : 1;
    //! Floats per staged key: 4 more than the head size keeps float4 alignment and makes the float4 stores of
    //! 8 consecutive keys hit 8 distinct 4-bank groups.
    static constexpr int32_t kRowStride = kHeadSize + 4;
    //! Resident blocks per SM asked of ptxas (__launch_bounds__): 4 caps registers at 128 per thread, which head
    //! size 16 fits without spills; head size 32 needs more (ptxas spilled at 128 for sm_80..89), 3 allows 168.
    static constexpr int32_t kMinBlocksPerSm = kHeadSize <= 16 ? 4 : 3;
    static_assert(kKeyTile % kKeyChunk == 0, "a chunk must not straddle two tiles");

    static constexpr std::size_t stagingBytes()
    {
        return 2 * kKeyTile * kRowStride * sizeof(float) + kKeyTile * sizeof(int32_t);
    }
};

//! Tensor-core body (escWindowAttentionMma.cuh): fp16 tensors, mma.sync m16n8k16 with fp32 accumulation, window
//! sizes that are multiples of 8 (so that every key tile and every warp's 16 queries are whole), sm_80 and newer.
template <int32_t kHeadSize>
struct MmaTiling
{
    static_assert(kHeadSize % 16 == 0, "head size must be a multiple of the mma k (16)");
    static constexpr int32_t kWarpQueries = 16; //!< the mma m: one row block of queries per warp
    static constexpr int32_t kMaxWarps = 8;
    static constexpr int32_t kKeyTile = 64;     //!< keys per online-softmax step (8 mma n-tiles)
    static constexpr int32_t kKeyGroup = 8;     //!< keys per 16-byte copy (consecutive pixels of one window row)
    static constexpr int32_t kWindowMultiple = 8;
    //! K and V tiles in flight: tile t is read while t + 1 and t + 2 are being copied (cp.async); three buffers
    //! need one barrier per tile.
    static constexpr int32_t kStages = 3;
    //! Halves per staged channel row ([channel][key] for both K and V, as in the NCHW map): 8 more than the tile
    //! puts the 8 rows that one ldmatrix reads on distinct banks and keeps rows 16-byte aligned.
    static constexpr int32_t kStageStride = kKeyTile + 8;
    static constexpr int32_t kStageHalves = 2 * kHeadSize * kStageStride; //!< K then V
    //! Resident blocks per SM asked of ptxas (__launch_bounds__): with 8 warps, 3 blocks cap registers at 80 per
    //! thread, which head size 16 fits without spills (validation/kernel_sass.py and the build test check);
    //! head size 32 needs more.
    static constexpr int32_t kMinBlocksPerSm = kHeadSize <= 16 ? 3 : 2;

    static constexpr std::size_t stagingBytes()
    {
        return static_cast<std::size_t>(kStages) * kStageHalves * 2;
    }
};

//! Warps of a tensor-core block for window size w: the most (up to kMaxWarps) that divide the window's 16-query
//! row blocks, so that no warp idles in a window's last block (w = 24: 36 row blocks, 6 warps); w * w is a
//! multiple of 64, so at least 4.
constexpr int32_t mmaWarps(int32_t window)
{
    int32_t const rowBlocks = window * window / 16;
    int32_t warps = 8;
    while (rowBlocks % warps != 0)
    {
        --warps;
    }
    return warps;
}

//! mmaWarps as a constant for device code (a host constexpr function cannot be called there).
template <int32_t kWindow>
inline constexpr int32_t kMmaWarps = mmaWarps(kWindow);

//! Window sizes with a tensor-core kernel of their own (the published ESC windows): the window is a
//! compile-time constant there. Other multiples of 8 run the general kernel (window 0: read at run time).
template <typename Result, typename Launch>
Result dispatchMmaWindow(int32_t window, Launch const& launch)
{
    switch (window)
    {
    case 8: return launch(std::integral_constant<int32_t, 8>{});
    case 16: return launch(std::integral_constant<int32_t, 16>{});
    case 24: return launch(std::integral_constant<int32_t, 24>{});
    case 32: return launch(std::integral_constant<int32_t, 32>{});
    case 48: return launch(std::integral_constant<int32_t, 48>{});
    case 64: return launch(std::integral_constant<int32_t, 64>{});
    default: return launch(std::integral_constant<int32_t, 0>{});
    }
}

enum class KernelBody : int32_t
{
    kSIMT = 0,
    kTENSOR_CORE = 1,
};

enum class PlanStatus : int32_t
{
    kLAUNCH = 0,  //!< launch with the plan
    kEMPTY = 1,   //!< nothing to compute (zero batch, height or width)
    kINVALID = 2, //!< arguments outside the supported range
};

struct LaunchPlan
{
    KernelBody body;
    uint32_t blocks[3]; //!< grid: (query blocks x windows, heads, batch)
    int32_t threads;
    std::size_t sharedBytes;
    WindowGeometry geometry;
};

constexpr int32_t kMAX_GRID_X = 2147483647;
constexpr int32_t kMAX_GRID_YZ = 65535;

//! Bias rows of the (2w-1) x (2w-1) table that one block of `blockQueries` consecutive queries can read: the w key
//! rows for the first query row plus one per further query row the block spans.
constexpr int32_t biasRowsPerBlock(int32_t window, int32_t blockQueries)
{
    return minimum(2 * window - 1, window + (blockQueries + window - 2) / window);
}

//! Checks the arguments and plans one launch for head size kHeadSize; `tensorCores` allows the tensor-core body
//! (fp16 tensors on sm_80+), which is taken when the window size is a multiple of 8. kINVALID for a window size
//! outside [8, 64], reflect padding not smaller than the side (numpy/torch 'reflect'), or grid limits.
template <int32_t kHeadSize>
PlanStatus planWindowAttention(int32_t batch, int32_t numHeads, int32_t height, int32_t width, int32_t windowSize,
    bool tensorCores, LaunchPlan& plan)
{
    if (batch < 0 || numHeads < 1 || height < 0 || width < 0 || windowSize < kMIN_WINDOW_SIZE
        || windowSize > kMAX_WINDOW_SIZE)
    {
        return PlanStatus::kINVALID;
    }
    if (batch == 0 || height == 0 || width == 0)
    {
        return PlanStatus::kEMPTY;
    }
    if (windowPadding(height, windowSize) >= height || windowPadding(width, windowSize) >= width)
    {
        return PlanStatus::kINVALID;
    }

    int32_t const w = windowSize;
    int32_t const tokens = w * w;
    int32_t const side = 2 * w - 1;
    int32_t const windowsY = ceilDiv(height, w);
    int32_t const windowsX = ceilDiv(width, w);

    int32_t blockQueries = 0;
    std::size_t staging = 0;
    if (tensorCores && w % MmaTiling<kHeadSize>::kWindowMultiple == 0)
    {
        using Tiling = MmaTiling<kHeadSize>;
        plan.body = KernelBody::kTENSOR_CORE;
        plan.threads = 32 * mmaWarps(w);
        blockQueries = plan.threads / 32 * Tiling::kWarpQueries;
        // K/V stages, the bias offset of each group of 8 keys, then the bias rows as (o, o + 1) pairs (below).
        staging = Tiling::stagingBytes() + static_cast<std::size_t>(tokens / Tiling::kKeyGroup) * sizeof(int32_t);
    }
    else
    {
        using Tiling = SimtTiling<kHeadSize>;
        plan.body = KernelBody::kSIMT;
        plan.threads = minimum(Tiling::kMaxThreads, ceilDiv(ceilDiv(tokens, Tiling::kQueriesPerThread), 32) * 32);
        blockQueries = plan.threads * Tiling::kQueriesPerThread;
        staging = Tiling::stagingBytes();
    }
    int32_t const queryBlocks = ceilDiv(tokens, blockQueries);
    int64_t const blocksX = static_cast<int64_t>(windowsY) * windowsX * queryBlocks;
    if (blocksX > kMAX_GRID_X || numHeads > kMAX_GRID_YZ || batch > kMAX_GRID_YZ)
    {
        return PlanStatus::kINVALID;
    }
    plan.blocks[0] = static_cast<uint32_t>(blocksX);
    plan.blocks[1] = static_cast<uint32_t>(numHeads);
    plan.blocks[2] = static_cast<uint32_t>(batch);
    // The tensor-core body keeps each bias entry o with o + 1 (one 8-byte load for two adjacent keys).
    std::size_t const biasEntry = plan.body == KernelBody::kTENSOR_CORE ? 2 * sizeof(float) : sizeof(float);
    plan.sharedBytes = staging + static_cast<std::size_t>(biasRowsPerBlock(w, blockQueries)) * side * biasEntry;
    plan.geometry = WindowGeometry{
        static_cast<int64_t>(height) * width, numHeads, height, width, w, windowsX, queryBlocks};
    return PlanStatus::kLAUNCH;
}

//! One instantiated (element type, table type, head size) combination, as a tag for dispatchKernelTypes.
template <typename T, typename TableT, int32_t kHead>
struct KernelTypes
{
    using Element = T;
    using Table = TableT;
    static constexpr int32_t kHeadSize = kHead;
};

//! Returns launch(KernelTypes<...>{}) for the combination the runtime arguments name, or `unsupported` where no
//! kernel exists (table type neither fp32 nor the element type, head size not 16 or 32). The one list of
//! instantiated combinations, for the CUDA launcher and the CPU emulation.
template <typename Result, typename Launch>
Result dispatchKernelTypes(
    EscDataType dtype, EscDataType tableType, int32_t headSize, Result unsupported, Launch const& launch)
{
    auto const byHeadSize = [&](auto small, auto large) -> Result
    {
        switch (headSize)
        {
        case kHEAD_SIZE_SMALL: return launch(small);
        case kHEAD_SIZE_LARGE: return launch(large);
        default: return unsupported;
        }
    };
    if (dtype == EscDataType::kFLOAT32 && tableType == EscDataType::kFLOAT32)
    {
        return byHeadSize(KernelTypes<float, float, kHEAD_SIZE_SMALL>{}, KernelTypes<float, float, kHEAD_SIZE_LARGE>{});
    }
    if (dtype == EscDataType::kFLOAT16 && tableType == EscDataType::kFLOAT32)
    {
        return byHeadSize(
            KernelTypes<__half, float, kHEAD_SIZE_SMALL>{}, KernelTypes<__half, float, kHEAD_SIZE_LARGE>{});
    }
    if (dtype == EscDataType::kFLOAT16 && tableType == EscDataType::kFLOAT16)
    {
        return byHeadSize(
            KernelTypes<__half, __half, kHEAD_SIZE_SMALL>{}, KernelTypes<__half, __half, kHEAD_SIZE_LARGE>{});
    }
    return unsupported;
}

} // namespace esc
