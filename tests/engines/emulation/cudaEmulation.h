/*
 * CPU emulation of the device primitives of engines/plugin/escDevicePrimitives.cuh, so that the kernel bodies
 * (the exact source the GPU runs) can be checked on machines without a GPU.
 *
 * A block runs as one fiber (ucontext) per CUDA thread on a single OS thread. A fiber runs until it reaches a
 * barrier: syncBlock() waits for every live thread of the block, the warp primitives (shuffleXor, mmaF16F32)
 * wait for the 32 lanes of the warp, which exchange their registers through a per-warp buffer. mma.sync is
 * computed from the fragment layout of the PTX ISA (m16n8k16, f16 inputs, f32 accumulation) with float math.
 * Not emulated: timing, memory ordering beyond the barriers, and the hardware's rounding order inside mma.
 */
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <cuda_fp16.h>
#include <stdexcept>
#include <string>
#include <ucontext.h>
#include <vector>
#include <vector_functions.h>
#include <vector_types.h>

#define ESC_DEVICE inline

namespace esc
{
namespace device
{

//! One emulated thread block: its fibers, its shared memory and the warps' exchange buffers.
class EmulatedBlock
{
public:
    static constexpr int32_t kWarpSize = 32;
    static constexpr int32_t kExchangeWords = 8; //!< registers one lane contributes to a warp primitive

    enum class State
    {
        kREADY,
        kAT_BLOCK_BARRIER,
        kAT_WARP_BARRIER,
        kDONE,
    };

    //! Runs `body` once per thread of a block of `threads` threads (a multiple of 32) at block index (x, y, z).
    template <typename Body>
    static void run(Body const& body, int32_t threads, uint32_t x, uint32_t y, uint32_t z, std::size_t sharedBytes)
    {
        if (threads <= 0 || threads % kWarpSize != 0)
        {
            throw std::invalid_argument("emulated blocks need a positive multiple of 32 threads");
        }
        EmulatedBlock block(threads, x, y, z, sharedBytes);
        block.mBody = [](void const* context) { (*static_cast<Body const*>(context))(); };
        block.mBodyContext = &body;
        block.schedule();
    }

    static EmulatedBlock& current()
    {
        return *sCurrent;
    }

    int32_t threadRank() const
    {
        return mRunning;
    }

    int32_t blockSize() const
    {
        return static_cast<int32_t>(mFibers.size());
    }

    uint32_t blockIndex(int32_t axis) const
    {
        return mBlockIndex[axis];
    }

    void* shared()
    {
        return mShared.data();
    }

    //! Parks the running fiber at a barrier and returns once the barrier is released.
    void wait(State barrier)
    {
        Fiber& fiber = mFibers[mRunning];
        fiber.state = barrier;
        swapcontext(&fiber.context, &mScheduler);
    }

    //! The running lane's exchange slot for the warp primitive in progress (two buffers, used alternately, so a
    //! lane may write the next primitive's registers while slower lanes still read this one's).
    uint32_t* exchange(int32_t lane, int32_t generation)
    {
        int32_t const warpBase = mRunning - mRunning % kWarpSize;
        return mExchange[generation % 2].data() + static_cast<std::size_t>(warpBase + lane) * kExchangeWords;
    }

    int32_t& warpGeneration()
    {
        return mFibers[mRunning].warpGeneration;
    }

private:
    struct Fiber
    {
        ucontext_t context{};
        std::vector<char> stack;
        State state = State::kREADY;
        int32_t warpGeneration = 0;
    };

    static constexpr std::size_t kStackBytes = 256 * 1024;
    static inline EmulatedBlock* sCurrent = nullptr;

    EmulatedBlock(int32_t threads, uint32_t x, uint32_t y, uint32_t z, std::size_t sharedBytes)
        : mFibers(static_cast<std::size_t>(threads))
        , mShared((sharedBytes + 15) / 16)
        , mBlockIndex{x, y, z}
    {
        for (auto& buffer : mExchange)
        {
            buffer.assign(static_cast<std::size_t>(threads) * kExchangeWords, 0U);
        }
    }

    static void fiberMain()
    {
        EmulatedBlock& block = *sCurrent;
        block.mBody(block.mBodyContext);
        block.mFibers[block.mRunning].state = State::kDONE; // then uc_link returns to the scheduler
    }

    void schedule()
    {
        sCurrent = this;
        for (auto& fiber : mFibers)
        {
            fiber.stack.resize(kStackBytes);
            getcontext(&fiber.context);
            fiber.context.uc_stack.ss_sp = fiber.stack.data();
            fiber.context.uc_stack.ss_size = fiber.stack.size();
            fiber.context.uc_link = &mScheduler;
            makecontext(&fiber.context, &EmulatedBlock::fiberMain, 0);
        }
        int32_t const threads = blockSize();
        while (true)
        {
            bool progressed = false;
            for (mRunning = 0; mRunning < threads; ++mRunning)
            {
                if (mFibers[mRunning].state == State::kREADY)
                {
                    swapcontext(&mScheduler, &mFibers[mRunning].context);
                    progressed = true;
                }
            }
            mRunning = -1;
            progressed = releaseWarps() || progressed;
            progressed = releaseBlock() || progressed;
            if (!progressed)
            {
                break;
            }
        }
        sCurrent = nullptr;
        for (int32_t t = 0; t < threads; ++t)
        {
            if (mFibers[t].state != State::kDONE)
            {
                throw std::runtime_error("emulated block deadlocked: thread " + std::to_string(t)
                    + " waits at a barrier that not every thread of its block or warp reaches");
            }
        }
    }

    bool releaseWarps()
    {
        bool released = false;
        for (std::size_t base = 0; base < mFibers.size(); base += kWarpSize)
        {
            bool all = true;
            for (std::size_t lane = 0; lane < kWarpSize; ++lane)
            {
                all = all && mFibers[base + lane].state == State::kAT_WARP_BARRIER;
            }
            if (all)
            {
                for (std::size_t lane = 0; lane < kWarpSize; ++lane)
                {
                    mFibers[base + lane].state = State::kREADY;
                }
                released = true;
            }
        }
        return released;
    }

    bool releaseBlock()
    {
        bool any = false;
        for (auto const& fiber : mFibers)
        {
            if (fiber.state == State::kREADY || fiber.state == State::kAT_WARP_BARRIER)
            {
                return false;
            }
            any = any || fiber.state == State::kAT_BLOCK_BARRIER;
        }
        for (auto& fiber : mFibers)
        {
            if (fiber.state == State::kAT_BLOCK_BARRIER)
            {
                fiber.state = State::kREADY;
            }
        }
        return any;
    }

    std::vector<Fiber> mFibers;
    std::vector<float4> mShared; // float4 keeps the 16-byte alignment of CUDA's dynamic shared memory
    std::vector<uint32_t> mExchange[2];
    uint32_t mBlockIndex[3];
    ucontext_t mScheduler{};
    int32_t mRunning = -1;
    void (*mBody)(void const*) = nullptr;
    void const* mBodyContext = nullptr;
};

inline int32_t threadRank()
{
    return EmulatedBlock::current().threadRank();
}

inline int32_t blockSize()
{
    return EmulatedBlock::current().blockSize();
}

inline int32_t blockX()
{
    return static_cast<int32_t>(EmulatedBlock::current().blockIndex(0));
}

inline int32_t blockY()
{
    return static_cast<int32_t>(EmulatedBlock::current().blockIndex(1));
}

inline int32_t blockZ()
{
    return static_cast<int32_t>(EmulatedBlock::current().blockIndex(2));
}

inline void syncBlock()
{
    EmulatedBlock::current().wait(EmulatedBlock::State::kAT_BLOCK_BARRIER);
}

inline void* sharedMemory()
{
    return EmulatedBlock::current().shared();
}

template <typename T>
inline T loadReadOnly(T const* p)
{
    return *p;
}

inline float exp2Approx(float x)
{
    return std::exp2(x);
}

namespace detail
{

//! Publishes this lane's registers, waits for the warp, and returns the warp's exchange base of this round.
template <int32_t kWords>
inline uint32_t const* exchangeWithWarp(uint32_t const (&words)[kWords], int32_t& lane)
{
    EmulatedBlock& block = EmulatedBlock::current();
    lane = block.threadRank() % EmulatedBlock::kWarpSize;
    int32_t const generation = block.warpGeneration()++;
    std::memcpy(block.exchange(lane, generation), words, sizeof(words));
    block.wait(EmulatedBlock::State::kAT_WARP_BARRIER);
    return block.exchange(0, generation);
}

inline float halfAt(uint32_t word, int32_t which)
{
    __half_raw raw;
    raw.x = static_cast<uint16_t>(which == 0 ? word & 0xffffU : word >> 16);
    return __half2float(__half(raw));
}

} // namespace detail

inline float shuffleXor(float v, int32_t laneMask)
{
    uint32_t words[1];
    std::memcpy(words, &v, sizeof(v));
    int32_t lane = 0;
    uint32_t const* const warp = detail::exchangeWithWarp(words, lane);
    float result;
    std::memcpy(&result, warp + (lane ^ laneMask) * EmulatedBlock::kExchangeWords, sizeof(result));
    return result;
}

//! d += a * b with the m16n8k16 fragment layout: lane = 4 * group + quad.
//! A element (row, k): lane 4 * (row % 8) + (k % 8) / 2, register (row / 8) + 2 * (k / 8), half k % 2.
//! B element (k, n): lane 4 * n + (k % 8) / 2, register k / 8, half k % 2.
//! C element: register i of lane holds (group + 8 * (i / 2), 2 * quad + i % 2).
inline void mmaF16F32(float (&d)[4], uint32_t const (&a)[4], uint32_t b0, uint32_t b1)
{
    uint32_t const words[6] = {a[0], a[1], a[2], a[3], b0, b1};
    int32_t lane = 0;
    uint32_t const* const warp = detail::exchangeWithWarp(words, lane);
    auto const aAt = [warp](int32_t row, int32_t k)
    {
        uint32_t const* const regs = warp + (4 * (row % 8) + (k % 8) / 2) * EmulatedBlock::kExchangeWords;
        return detail::halfAt(regs[row / 8 + 2 * (k / 8)], k % 2);
    };
    auto const bAt = [warp](int32_t k, int32_t n)
    {
        uint32_t const* const regs = warp + (4 * n + (k % 8) / 2) * EmulatedBlock::kExchangeWords;
        return detail::halfAt(regs[4 + k / 8], k % 2);
    };
    int32_t const group = lane / 4;
    int32_t const quad = lane % 4;
    for (int32_t i = 0; i < 4; ++i)
    {
        int32_t const row = group + 8 * (i / 2);
        int32_t const col = 2 * quad + i % 2;
        float sum = d[i];
        for (int32_t k = 0; k < 16; ++k)
        {
            sum += aAt(row, k) * bAt(k, col);
        }
        d[i] = sum;
    }
}

} // namespace device
} // namespace esc
