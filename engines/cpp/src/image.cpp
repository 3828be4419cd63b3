#include "esc/image.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <stdexcept>

#ifdef ESC_WITH_PNG
#include <png.h>
#endif

namespace esc {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& why) {
    throw std::runtime_error(path + ": " + why);
}

// Next header token of a PPM file, skipping whitespace and '#' comments.
std::string ppmToken(std::istream& in, const std::string& path) {
    std::string token;
    int ch;
    while ((ch = in.get()) != EOF) {
        if (ch == '#') {
            while ((ch = in.get()) != EOF && ch != '\n') {
            }
        } else if (std::isspace(ch)) {
            if (!token.empty()) return token;
        } else {
            token.push_back(static_cast<char>(ch));
        }
    }
    fail(path, "truncated PPM header");
}

int ppmInt(std::istream& in, const std::string& path, const char* what) {
    const std::string token = ppmToken(in, path);
    size_t used = 0;
    int value = 0;
    try {
        value = std::stoi(token, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used != token.size() || value < 1) fail(path, std::string("expected a positive ") + what + ", found '" + token + "'");
    return value;
}

Image fromInterleaved(const std::vector<unsigned char>& bytes, int width, int height) {
    Image image(width, height);
    for (int y = 0; y < height; ++y)
        for (int x = 0; x < width; ++x)
            for (int c = 0; c < 3; ++c)
                image.at(c, y, x) = bytes[(static_cast<size_t>(y) * width + x) * 3 + c] / 255.0f;
    return image;
}

std::vector<unsigned char> toInterleaved(const Image& image) {
    if (image.width < 1 || image.height < 1 || image.data.size() != static_cast<size_t>(3) * image.width * image.height)
        throw std::invalid_argument("image has inconsistent size");
    std::vector<unsigned char> bytes(image.data.size());
    for (int y = 0; y < image.height; ++y)
        for (int x = 0; x < image.width; ++x)
            for (int c = 0; c < 3; ++c)
                bytes[(static_cast<size_t>(y) * image.width + x) * 3 + c] = toByte(image.at(c, y, x));
    return bytes;
}

bool hasSuffix(const std::string& s, const std::string& suffix) {
    if (s.size() < suffix.size()) return false;
    for (size_t i = 0; i < suffix.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(s[s.size() - suffix.size() + i])) != suffix[i]) return false;
    return true;
}

// Write to path + ".tmp", then rename: a failed write leaves no partial file.
template <typename Writer>
void atomicWrite(const std::string& path, Writer write) {
    const std::string tmp = path + ".tmp";
    try {
        write(tmp);
    } catch (...) {
        std::remove(tmp.c_str());
        throw;
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        fail(path, "cannot rename the temporary file into place");
    }
}

}  // namespace

unsigned char toByte(float value) {
    const float scaled = std::nearbyint(value * 255.0f);  // default rounding mode: ties to even
    return static_cast<unsigned char>(scaled < 0.0f ? 0.0f : (scaled > 255.0f ? 255.0f : scaled));
}

Image readPpm(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(path, "cannot open");
    if (ppmToken(in, path) != "P6") fail(path, "not a binary PPM (expected magic P6)");
    const int width = ppmInt(in, path, "width");
    const int height = ppmInt(in, path, "height");
    const int maxval = ppmInt(in, path, "maxval");
    if (maxval != 255) fail(path, "expected maxval 255 (8-bit), found " + std::to_string(maxval));
    // ppmToken consumed exactly one whitespace byte after maxval: the raster starts here.
    std::vector<unsigned char> bytes(static_cast<size_t>(3) * width * height);
    in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (in.gcount() != static_cast<std::streamsize>(bytes.size()))
        fail(path, "truncated PPM raster: expected " + std::to_string(bytes.size()) + " bytes");
    return fromInterleaved(bytes, width, height);
}

void writePpm(const std::string& path, const Image& image) {
    const std::vector<unsigned char> bytes = toInterleaved(image);
    atomicWrite(path, [&](const std::string& tmp) {
        std::ofstream out(tmp, std::ios::binary);
        out << "P6\n" << image.width << " " << image.height << "\n255\n";
        out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        if (!out.flush()) fail(tmp, "write failed");
    });
}

bool pngSupported() {
#ifdef ESC_WITH_PNG
    return true;
#else
    return false;
#endif
}

#ifdef ESC_WITH_PNG
Image readPng(const std::string& path) {
    png_image png{};
    png.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&png, path.c_str())) fail(path, std::string("libpng: ") + png.message);
    png.format = PNG_FORMAT_RGB;  // libpng converts grey/palette/alpha/16-bit to 8-bit RGB
    std::vector<unsigned char> bytes(PNG_IMAGE_SIZE(png));
    if (!png_image_finish_read(&png, nullptr, bytes.data(), 0, nullptr)) {
        const std::string message = png.message;
        png_image_free(&png);
        fail(path, "libpng: " + message);
    }
    return fromInterleaved(bytes, static_cast<int>(png.width), static_cast<int>(png.height));
}

void writePng(const std::string& path, const Image& image) {
    const std::vector<unsigned char> bytes = toInterleaved(image);
    atomicWrite(path, [&](const std::string& tmp) {
        png_image png{};
        png.version = PNG_IMAGE_VERSION;
        png.width = static_cast<png_uint_32>(image.width);
        png.height = static_cast<png_uint_32>(image.height);
        png.format = PNG_FORMAT_RGB;
        if (!png_image_write_to_file(&png, tmp.c_str(), 0, bytes.data(), 0, nullptr))
            fail(tmp, std::string("libpng: ") + png.message);
    });
}
#else
Image readPng(const std::string& path) { fail(path, "built without libpng: PNG is not supported, use PPM"); }
void writePng(const std::string& path, const Image&) { fail(path, "built without libpng: PNG is not supported, use PPM"); }
#endif

Image readImage(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(path, "cannot open");
    unsigned char magic[8] = {};
    in.read(reinterpret_cast<char*>(magic), sizeof(magic));
    static const unsigned char kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (in.gcount() == 8 && std::equal(magic, magic + 8, kPng)) return readPng(path);
    if (in.gcount() >= 2 && magic[0] == 'P' && magic[1] == '6') return readPpm(path);
    fail(path, "unknown format: expected PNG or binary PPM (P6)");
}

void writeImage(const std::string& path, const Image& image) {
    if (hasSuffix(path, ".png"))
        writePng(path, image);
    else
        writePpm(path, image);
}

}  // namespace esc
