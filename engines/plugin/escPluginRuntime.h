/*
 * How this plugin library meets the TensorRT runtime that loads it, without linking to any TensorRT library.
 *
 * One binary serves every runtime of the header major it was built with (TensorRT 10.x with 10.x headers;
 * TensorRT 11.x, its lean/dispatch runtimes and TensorRT for RTX 1.x with 11.x headers). Loaders:
 *   - dlopen (ctypes, Triton's plugins=, polygraphy, trtexec --staticPlugins, LD_PRELOAD after TensorRT):
 *     a static initializer finds the runtime already in the process and registers the creator;
 *   - IPluginRegistry::loadLibrary (trtexec --dynamicPlugins, setPluginsToSerialize): the exported
 *     setLoggerFinder/getCreators hand the creator to the registry, which then owns its registration.
 * A runtime of another major is refused with one line on stderr: the interfaces' layouts differ between
 * majors, so touching its registry or logger would crash.
 */
#pragma once

#include "NvInferRuntime.h"

#include <cstdint>

namespace esc
{
namespace plugin
{

//! The TensorRT runtime found in this process, or none.
struct RuntimeInfo
{
    char const* library{nullptr}; //!< soname it was found under, or "process" for a global symbol
    int32_t version{0};           //!< getInferLibVersion()
    int32_t major{0};             //!< getInferLibMajorVersion()
    bool rtx{false};              //!< TensorRT for RTX (its 1.x speaks the 11.x plugin interfaces)
};

//! The plugin-interface major of the headers this library was built with (NV_TENSORRT_MAJOR; 11 for RTX 1.x).
int32_t builtMajor() noexcept;

//! The runtime in this process (first found); `library` is nullptr when there is none.
RuntimeInfo findRuntime() noexcept;

//! Whether a library built with `headerMajor` headers may talk to `runtime`.
bool isCompatible(RuntimeInfo const& runtime, int32_t headerMajor) noexcept;

//! The logger to write to: the loader's (setLoggerFinder), else the compatible runtime's getLogger(), else none.
nvinfer1::ILogger* pluginLogger() noexcept;

} // namespace plugin
} // namespace esc

// Exported whatever the visibility default (TENSORRTAPI exports only inside TensorRT's own build).
#define ESC_PLUGIN_API __attribute__((visibility("default")))

//! The entry points of IPluginRegistry::loadLibrary (see "Plugin Shared Libraries" in TensorRT's guide).
extern "C" ESC_PLUGIN_API void setLoggerFinder(nvinfer1::ILoggerFinder* finder);
extern "C" ESC_PLUGIN_API nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);
