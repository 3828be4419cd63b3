/*
 * Registration of the ESCWindowAttention creator with whichever TensorRT runtime loads this library; see
 * escPluginRuntime.h for the loaders and the rule that a runtime of another header major is refused.
 */
#include "escPluginRuntime.h"

#include "escWindowAttentionPlugin.h"

#include "NvInferVersion.h"

#include <dlfcn.h>

#include <atomic>
#include <cstdio>
#include <mutex>

#define ESC_STRINGIFY_IMPL(x) #x
#define ESC_STRINGIFY(x) ESC_STRINGIFY_IMPL(x)

// The plugin-interface major of the headers: TensorRT for RTX 1.x SDK headers speak TensorRT 11's interfaces.
#if NV_TENSORRT_MAJOR == 1
#define ESC_INTERFACE_MAJOR 11
#else
#define ESC_INTERFACE_MAJOR NV_TENSORRT_MAJOR
#endif

namespace esc
{
namespace plugin
{
namespace
{

using GetVersionFn = int32_t (*)();
using GetRegistryFn = nvinfer1::IPluginRegistry* (*) ();
using GetLoggerFn = nvinfer1::ILogger* (*) ();

//! The TensorRT libraries that export getPluginRegistry, newest first. Loaded libraries are found by soname
//! (RTLD_NOLOAD), since Python bindings load them without RTLD_GLOBAL.
constexpr char const* kRUNTIME_LIBRARIES[] = {"libnvinfer.so.11", "libnvinfer_lean.so.11",
    "libnvinfer_dispatch.so.11", "libtensorrt_rtx.so.1", "libnvinfer.so.10", "libnvinfer_lean.so.10",
    "libnvinfer_dispatch.so.10"};

struct Runtime
{
    RuntimeInfo info;
    GetRegistryFn getRegistry{nullptr};
    GetLoggerFn getLogger{nullptr};
};

Runtime runtimeFrom(void* handle, char const* library) noexcept
{
    Runtime runtime;
    auto const getVersion = reinterpret_cast<GetVersionFn>(dlsym(handle, "getInferLibVersion"));
    if (getVersion == nullptr)
    {
        return runtime;
    }
    runtime.info.library = library;
    runtime.info.version = getVersion();
    runtime.info.major = runtime.info.version / 10000; // (MAJOR * 100 + MINOR) * 100 + PATCH
    runtime.info.rtx = runtime.info.major == 1;
    runtime.getRegistry = reinterpret_cast<GetRegistryFn>(dlsym(handle, "getPluginRegistry"));
    runtime.getLogger = reinterpret_cast<GetLoggerFn>(dlsym(handle, "getLogger"));
    return runtime;
}

Runtime findRuntimeFunctions() noexcept
{
    Runtime runtime = runtimeFrom(RTLD_DEFAULT, "process");
    for (char const* library : kRUNTIME_LIBRARIES)
    {
        if (runtime.info.library != nullptr)
        {
            break;
        }
        void* const handle = dlopen(library, RTLD_NOW | RTLD_NOLOAD);
        if (handle != nullptr)
        {
            runtime = runtimeFrom(handle, library);
            dlclose(handle); // drops only the reference RTLD_NOLOAD added
        }
    }
    return runtime;
}

//! The first runtime found, remembered once found (the library may be loaded before TensorRT is).
Runtime currentRuntime() noexcept
{
    static std::mutex mutex;
    static Runtime found;
    try
    {
        std::lock_guard<std::mutex> const lock(mutex);
        if (found.info.library == nullptr)
        {
            found = findRuntimeFunctions();
        }
        return found;
    }
    catch (...) // std::mutex::lock may throw std::system_error
    {
        return findRuntimeFunctions();
    }
}

//! Once per process: dlopen and getCreators both refuse.
void reportRefusal(RuntimeInfo const& runtime) noexcept
{
    static std::atomic<bool> reported{false};
    if (reported.exchange(true))
    {
        return;
    }
    int32_t const v = runtime.version;
    std::fprintf(stderr,
        "%s: this plugin library was built with TensorRT %d headers and refuses to register into %s %d.%d.%d "
        "(found as %s); rebuild it with the headers of that runtime's major version (engines/plugin/README.md)\n",
        kPLUGIN_NAME, builtMajor(), runtime.rtx ? "TensorRT for RTX" : "TensorRT", v / 10000, v / 100 % 100, v % 100,
        runtime.library);
}

EscWindowAttentionPluginCreator& creator() noexcept
{
    static EscWindowAttentionPluginCreator instance;
    return instance;
}

std::atomic<nvinfer1::ILoggerFinder*> gLoggerFinder{nullptr};

//! Registration on dlopen; undone on dlclose, and handed over when a registry loads the library itself.
class StaticRegistration
{
public:
    StaticRegistration() noexcept
    {
        Runtime const runtime = currentRuntime();
        if (runtime.info.library == nullptr || runtime.getRegistry == nullptr)
        {
            return; // no TensorRT yet: IPluginRegistry::loadLibrary (getCreators) registers instead
        }
        if (!isCompatible(runtime.info, builtMajor()))
        {
            reportRefusal(runtime.info);
            return;
        }
        nvinfer1::IPluginRegistry* const registry = runtime.getRegistry();
        if (registry != nullptr && registry->registerCreator(creator(), kPLUGIN_NAMESPACE))
        {
            mRegistry = registry;
        }
    }

    ~StaticRegistration()
    {
        release();
    }

    StaticRegistration(StaticRegistration const&) = delete;
    StaticRegistration& operator=(StaticRegistration const&) = delete;

    //! Deregisters what the constructor registered, so that the creator is never registered twice.
    void release() noexcept
    {
        nvinfer1::IPluginRegistry* const registry = mRegistry.exchange(nullptr);
        if (registry != nullptr)
        {
            registry->deregisterCreator(creator());
        }
    }

private:
    std::atomic<nvinfer1::IPluginRegistry*> mRegistry{nullptr};
};

StaticRegistration gStaticRegistration;

} // namespace

int32_t builtMajor() noexcept
{
    return ESC_INTERFACE_MAJOR;
}

RuntimeInfo findRuntime() noexcept
{
    return currentRuntime().info;
}

bool isCompatible(RuntimeInfo const& runtime, int32_t headerMajor) noexcept
{
    // TensorRT for RTX 1.x shares TensorRT 11's plugin interfaces.
    int32_t const interfaceMajor = runtime.rtx ? 11 : runtime.major;
    return interfaceMajor == headerMajor;
}

nvinfer1::ILogger* pluginLogger() noexcept
{
    nvinfer1::ILoggerFinder* const finder = gLoggerFinder.load();
    if (finder != nullptr)
    {
        return finder->findLogger();
    }
    Runtime const runtime = currentRuntime();
    if (runtime.getLogger != nullptr && isCompatible(runtime.info, builtMajor()))
    {
        return runtime.getLogger();
    }
    return nullptr;
}

} // namespace plugin
} // namespace esc

extern "C" void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    esc::plugin::RuntimeInfo const runtime = esc::plugin::findRuntime();
    if (runtime.library == nullptr || esc::plugin::isCompatible(runtime, esc::plugin::builtMajor()))
    {
        esc::plugin::gLoggerFinder.store(finder);
    }
}

extern "C" nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    nbCreators = 0;
    esc::plugin::RuntimeInfo const runtime = esc::plugin::findRuntime();
    if (runtime.library != nullptr && !esc::plugin::isCompatible(runtime, esc::plugin::builtMajor()))
    {
        esc::plugin::reportRefusal(runtime);
        return nullptr;
    }
    // The registry calling us registers the creator and owns that registration from now on.
    esc::plugin::gStaticRegistration.release();
    static nvinfer1::IPluginCreatorInterface* const creators[] = {&esc::plugin::creator()};
    nbCreators = 1;
    return creators;
}

//! Read from the file by export/trt/plugin.py before loading, so a library of the wrong major is refused
//! without running any of its code.
extern "C" ESC_PLUGIN_API char const escPluginBuildInfo[]
    = "esc-trt-plugin tensorrt-headers-major=" ESC_STRINGIFY(ESC_INTERFACE_MAJOR);
