// Planar RGB float images and their files: PPM (P6, 8-bit) by hand, PNG (8-bit RGB) through libpng.
#pragma once

#include <string>
#include <vector>

namespace esc {

// RGB, planar (C, H, W) float32 in [0, 1]: the network's input layout for one image.
struct Image {
    int width = 0;
    int height = 0;
    std::vector<float> data;  // 3 * height * width

    Image() = default;
    Image(int w, int h) : width(w), height(h), data(static_cast<size_t>(3) * w * h, 0.0f) {}
    float& at(int c, int y, int x) { return data[(static_cast<size_t>(c) * height + y) * width + x]; }
    float at(int c, int y, int x) const { return data[(static_cast<size_t>(c) * height + y) * width + x]; }
};

// Every function throws std::runtime_error with the path and the reason.
Image readPpm(const std::string& path);
void writePpm(const std::string& path, const Image& image);
Image readPng(const std::string& path);
void writePng(const std::string& path, const Image& image);
bool pngSupported();

// By content (PNG signature, "P6") for reading and by extension (.png, else PPM) for writing.
Image readImage(const std::string& path);
void writeImage(const std::string& path, const Image& image);

// float [0, 1] -> byte: clipped, rounded to nearest (ties to even, as numpy.rint).
unsigned char toByte(float value);

}  // namespace esc
