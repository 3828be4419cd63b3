/*
 * TensorRT IPluginV3 wrapper of ESC's fused window attention (escWindowAttentionKernel.h).
 *
 * Node: ESCWindowAttention (ONNX domain trt.plugins), written by export/ once per ESC block.
 *   input 0  qkv    [B, 3C, H, W]      fp32 or fp16, channels ordered (qkv heads c)
 *   input 1  table  [heads, (2w-1)^2]  fp32 or the type of qkv
 *   output 0 out    [B, C, H, W]       the type of qkv
 *   attributes num_heads (int, C / heads in {16, 32}), window_size (int, w in [8, 64])
 */
#pragma once

#include "NvInferRuntime.h"

#include <array>
#include <cstdint>
#include <string>

namespace esc
{
namespace plugin
{

// The node contract. Every value equals the same name without the leading k in export/plugin_contract.py
// (tests/engines/test_plugin_contract.py parses this block and compares).
// contract-begin
constexpr char const* kDOMAIN = "trt.plugins";
constexpr char const* kOP_TYPE = "ESCWindowAttention";
constexpr char const* kPLUGIN_VERSION = "1";
constexpr char const* kPLUGIN_NAMESPACE = "";
constexpr char const* kATTR_NUM_HEADS = "num_heads";
constexpr char const* kATTR_WINDOW_SIZE = "window_size";
constexpr char const* kATTR_PLUGIN_VERSION = "plugin_version";
constexpr char const* kATTR_PLUGIN_NAMESPACE = "plugin_namespace";
constexpr int32_t kNUM_INPUTS = 2;
constexpr int32_t kNUM_OUTPUTS = 1;
// contract-end

//! num_heads is the kernel's grid y dimension (at most 65535 blocks).
constexpr int32_t kMAX_NUM_HEADS = 65535;

//! The TensorRT plugin name is the ONNX op type (the ONNX parser looks the creator up by op type).
constexpr char const* kPLUGIN_NAME = kOP_TYPE;

class EscWindowAttentionPlugin : public nvinfer1::IPluginV3,
                                 public nvinfer1::IPluginV3OneCore,
                                 public nvinfer1::IPluginV3OneBuild,
                                 public nvinfer1::IPluginV3OneRuntime
{
public:
    //! Validates the attributes; throws std::invalid_argument (caught by the creator).
    EscWindowAttentionPlugin(int32_t numHeads, int32_t windowSize);
    EscWindowAttentionPlugin(EscWindowAttentionPlugin const&) = default;
    EscWindowAttentionPlugin& operator=(EscWindowAttentionPlugin const&) = delete;
    ~EscWindowAttentionPlugin() override = default;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override;
    char const* getTimingCacheID() noexcept override;
    char const* getMetadataString() noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    //! Checks the dims that are known (>= 0) against the attributes; throws std::invalid_argument.
    void checkDims(nvinfer1::Dims const& qkv, nvinfer1::Dims const& table) const;

    int32_t mNumHeads;
    int32_t mWindowSize;
    std::string mCacheId; //!< "ESCWindowAttention_1_heads<h>_window<w>": timing cache ID and metadata

    // Cached by onShapeChange for enqueue.
    nvinfer1::DataType mType{nvinfer1::DataType::kFLOAT};
    nvinfer1::DataType mTableType{nvinfer1::DataType::kFLOAT};
    int32_t mBatch{0};
    int32_t mChannels{0}; //!< C, the output channels
    int32_t mHeight{0};
    int32_t mWidth{0};

    std::array<nvinfer1::PluginField, 2> mFields{};
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

class EscWindowAttentionPluginCreator : public nvinfer1::IPluginCreatorV3One
{
public:
    EscWindowAttentionPluginCreator() noexcept;
    ~EscWindowAttentionPluginCreator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    //! Returns nullptr (after logging why) for missing, unknown or invalid fields.
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

private:
    std::array<nvinfer1::PluginField, 2> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

} // namespace plugin
} // namespace esc
