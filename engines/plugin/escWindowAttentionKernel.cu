/*
 * Fused window self-attention of ESC: see escWindowAttentionKernel.h for the function computed.
 *
 * Two kernel bodies, chosen per launch by escWindowAttentionPlan.h:
 *   - escWindowAttentionMma.cuh: tensor cores (mma.sync m16n8k16, fp32 accumulation) for fp16 tensors on sm_80+
 *     with a window size that is a multiple of 8 (every published ESC model), one kernel per published window
 *     size (dispatchMmaWindow) and a general one;
 *   - escWindowAttentionSimt.cuh: fp32 math on CUDA cores for fp32 tensors and every other case.
 * Both are written against escDevicePrimitives.cuh; this file holds the __global__ entry points and launchers.
 */
#include "escWindowAttentionKernel.h"

#include "escDevicePrimitives.cuh"
#include "escWindowAttentionMma.cuh"
#include "escWindowAttentionPlan.h"
#include "escWindowAttentionSimt.cuh"

#include <atomic>
#include <type_traits>

namespace esc
{
namespace
{

template <typename T, typename TableT, int32_t kHeadSize>
__global__ void __launch_bounds__(SimtTiling<kHeadSize>::kMaxThreads, SimtTiling<kHeadSize>::kMinBlocksPerSm)
    simtWindowAttentionKernel(
        T const* __restrict__ qkv, TableT const* __restrict__ table, T* __restrict__ out, WindowGeometry const g)
{
    device::simtWindowAttention<T, TableT, kHeadSize>(qkv, table, out, g);
}

//! kWindow: the window size where it is a compile-time constant (dispatchMmaWindow), 0 for the general kernel.
template <typename TableT, int32_t kHeadSize, int32_t kWindow>
__global__ void __launch_bounds__(32 * (kWindow == 0 ? MmaTiling<kHeadSize>::kMaxWarps : kMmaWarps<kWindow == 0 ? 8 : kWindow>),
    MmaTiling<kHeadSize>::kMinBlocksPerSm)
    mmaWindowAttentionKernel(
        __half const* __restrict__ qkv, TableT const* __restrict__ table, __half* __restrict__ out, WindowGeometry const g)
{
    device::mmaWindowAttention<TableT, kHeadSize, kWindow>(qkv, table, out, g);
}

//! Sets the dynamic shared memory limit where a launch needs more than the default 48 KiB.
template <typename Kernel>
cudaError_t allowSharedMemory(Kernel kernel, std::size_t bytes)
{
    if (bytes <= 48 * 1024)
    {
        return cudaSuccess;
    }
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
}

//! Whether the tensor-core body runs on the current device: the image loaded for it must come from PTX for sm_80+
//! (mma.sync m16n8k16; an sm_75 build JIT-compiled for a newer GPU holds only the __trap fallback). Cached per device.
cudaError_t tensorCoreBodyUsable(bool& usable)
{
    constexpr int kMaxCachedDevices = 64;
    static std::atomic<int8_t> cache[kMaxCachedDevices]; // 0 unknown, 1 no, 2 yes (static: zero-initialised)
    int device = 0;
    cudaError_t status = cudaGetDevice(&device);
    if (status != cudaSuccess)
    {
        return status;
    }
    bool const cacheable = device >= 0 && device < kMaxCachedDevices;
    int8_t const known = cacheable ? cache[device].load(std::memory_order_relaxed) : int8_t{0};
    if (known != 0)
    {
        usable = known == 2;
        return cudaSuccess;
    }
    cudaFuncAttributes attributes{};
    status = cudaFuncGetAttributes(&attributes, mmaWindowAttentionKernel<float, kHEAD_SIZE_SMALL, 32>);
    if (status != cudaSuccess)
    {
        return status;
    }
    usable = attributes.ptxVersion >= 80;
    if (cacheable)
    {
        cache[device].store(usable ? 2 : 1, std::memory_order_relaxed);
    }
    return cudaSuccess;
}

template <typename T, typename TableT, int32_t kHeadSize>
cudaError_t launchPlanned(LaunchPlan const& plan, T const* qkv, TableT const* table, T* out, cudaStream_t stream)
{
    dim3 const grid(plan.blocks[0], plan.blocks[1], plan.blocks[2]);
    if constexpr (std::is_same_v<T, __half>)
    {
        if (plan.body == KernelBody::kTENSOR_CORE)
        {
            return dispatchMmaWindow<cudaError_t>(plan.geometry.window,
                [&](auto window)
                {
                    auto* const kernel = mmaWindowAttentionKernel<TableT, kHeadSize, decltype(window)::value>;
                    cudaError_t const status = allowSharedMemory(kernel, plan.sharedBytes);
                    if (status != cudaSuccess)
                    {
                        return status;
                    }
                    kernel<<<grid, plan.threads, plan.sharedBytes, stream>>>(qkv, table, out, plan.geometry);
                    return cudaGetLastError();
                });
        }
    }
    auto* const kernel = simtWindowAttentionKernel<T, TableT, kHeadSize>;
    cudaError_t const status = allowSharedMemory(kernel, plan.sharedBytes);
    if (status != cudaSuccess)
    {
        return status;
    }
    kernel<<<grid, plan.threads, plan.sharedBytes, stream>>>(qkv, table, out, plan.geometry);
    return cudaGetLastError();
}

} // namespace

template <typename T, typename TableT, int32_t kHeadSize>
cudaError_t launchWindowAttention(T const* qkv, TableT const* table, T* out, int32_t batch, int32_t numHeads,
    int32_t height, int32_t width, int32_t windowSize, cudaStream_t stream)
{
    bool tensorCores = false;
    if constexpr (std::is_same_v<T, __half>)
    {
        cudaError_t const status = tensorCoreBodyUsable(tensorCores);
        if (status != cudaSuccess)
        {
            return status;
        }
    }
    LaunchPlan plan{};
    switch (planWindowAttention<kHeadSize>(batch, numHeads, height, width, windowSize, tensorCores, plan))
    {
    case PlanStatus::kLAUNCH: break;
    case PlanStatus::kEMPTY: return cudaSuccess;
    case PlanStatus::kINVALID: return cudaErrorInvalidValue;
    }
    if (qkv == nullptr || table == nullptr || out == nullptr)
    {
        return cudaErrorInvalidValue;
    }
    return launchPlanned<T, TableT, kHeadSize>(plan, qkv, table, out, stream);
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
    return dispatchKernelTypes(dtype, tableType, channels / numHeads, cudaErrorInvalidValue,
        [&](auto types)
        {
            using Types = decltype(types);
            using T = typename Types::Element;
            using TableT = typename Types::Table;
            return launchWindowAttention<T, TableT, Types::kHeadSize>(static_cast<T const*>(qkv),
                static_cast<TableT const*>(table), static_cast<T*>(out), batch, numHeads, height, width, windowSize,
                stream);
        });
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
