// Unit tests of esc_image and esc_tiling (registered with CTest), and a grid printer for pytest:
//   esc_cpp_tests                                             run the tests (files go to the cwd)
//   esc_cpp_tests grid H W TILE_H TILE_W OVERLAP ALIGN SCALE  print tiles and weights as JSON
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>

#include "esc/image.h"
#include "esc/tiling.h"

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
    if (!ok) {
        ++failures;
        std::cerr << "FAIL: " << what << "\n";
    }
}

template <typename F>
void checkThrows(F f, const std::string& what) {
    try {
        f();
    } catch (const std::exception&) {
        return;
    }
    check(false, what + " did not throw");
}

// Values that are exact multiples of 1/255, so an 8-bit round trip is lossless.
esc::Image pattern(int w, int h) {
    esc::Image img(w, h);
    for (size_t i = 0; i < img.data.size(); ++i) img.data[i] = static_cast<float>((i * 37) % 256) / 255.0f;
    return img;
}

esc::Image nearest(const esc::Image& in, int s) {
    esc::Image out(in.width * s, in.height * s);
    for (int c = 0; c < 3; ++c)
        for (int y = 0; y < out.height; ++y)
            for (int x = 0; x < out.width; ++x) out.at(c, y, x) = in.at(c, y / s, x / s);
    return out;
}

float maxDiff(const esc::Image& a, const esc::Image& b) {
    if (a.width != b.width || a.height != b.height) return INFINITY;
    float m = 0;
    for (size_t i = 0; i < a.data.size(); ++i) m = std::fmax(m, std::fabs(a.data[i] - b.data[i]));
    return m;
}

void testPpm() {
    const esc::Image img = pattern(7, 5);
    esc::writePpm("esc_test.ppm", img);
    check(maxDiff(esc::readPpm("esc_test.ppm"), img) == 0.0f, "PPM round trip is lossless");
    check(maxDiff(esc::readImage("esc_test.ppm"), img) == 0.0f, "readImage detects PPM");
    {
        std::ofstream f("esc_comment.ppm", std::ios::binary);
        f << "P6\n# a comment\n2 1\n# another\n255\n";
        f.write("\x00\x80\xff\x01\x02\x03", 6);
    }
    const esc::Image c = esc::readPpm("esc_comment.ppm");
    check(c.width == 2 && c.height == 1 && c.at(1, 0, 0) == 128 / 255.0f && c.at(2, 0, 1) == 3 / 255.0f,
          "PPM header comments and raster layout");
    {
        std::ofstream f("esc_bad.ppm", std::ios::binary);
        f << "P6\n4 4\n255\nshort";
    }
    checkThrows([] { esc::readPpm("esc_bad.ppm"); }, "truncated PPM");
    {
        std::ofstream f("esc_16.ppm", std::ios::binary);
        f << "P6\n1 1\n65535\n123456";
    }
    checkThrows([] { esc::readPpm("esc_16.ppm"); }, "16-bit PPM");
    checkThrows([] { esc::readPpm("esc_missing.ppm"); }, "missing file");
    for (const char* f : {"esc_test.ppm", "esc_comment.ppm", "esc_bad.ppm", "esc_16.ppm"}) std::remove(f);
}

void testPng() {
    if (!esc::pngSupported()) {
        checkThrows([] { esc::writePng("esc_test.png", pattern(2, 2)); }, "PNG without libpng");
        return;
    }
    const esc::Image img = pattern(9, 4);
    esc::writeImage("esc_test.png", img);
    check(maxDiff(esc::readImage("esc_test.png"), img) == 0.0f, "PNG round trip is lossless");
    std::remove("esc_test.png");
}

void testToByte() {
    check(esc::toByte(-1.0f) == 0 && esc::toByte(2.0f) == 255, "toByte clips");
    check(esc::toByte(0.5f / 255.0f) == 0 && esc::toByte(1.5f / 255.0f) == 2, "toByte rounds ties to even");
}

void testSpans() {
    auto eq = [](const std::vector<esc::Span>& s, std::vector<std::pair<int, int>> e) {
        if (s.size() != e.size()) return false;
        for (size_t i = 0; i < s.size(); ++i)
            if (s[i].start != e[i].first || s[i].length != e[i].second) return false;
        return true;
    };
    check(eq(esc::tileSpans(30, 64, 16), {{0, 30}}), "one tile");
    check(eq(esc::tileSpans(100, 64, 16), {{0, 64}, {36, 64}}), "last tile flush with the end");
    check(eq(esc::tileSpans(200, 64, 16), {{0, 64}, {48, 64}, {96, 64}, {136, 64}}), "stride 48");
    check(eq(esc::tileSpans(97, 64, 16, 32), {{0, 64}, {32, 64}, {64, 33}}), "aligned, short last tile");
    checkThrows([] { esc::tileSpans(100, 16, 16); }, "overlap == tile");
    checkThrows([] { esc::tileSpans(100, 40, 16, 32); }, "stride below align");
    for (int scale : {1, 2, 4}) {
        const auto spans = esc::tileSpans(97, 64, 16, 32);
        const auto w = esc::axisWeights(spans, scale);
        std::vector<double> total(97 * scale, 0.0);
        for (size_t i = 0; i < spans.size(); ++i)
            for (size_t j = 0; j < w[i].size(); ++j) total[spans[i].start * scale + j] += w[i][j];
        double worst = 0;
        for (double t : total) worst = std::fmax(worst, std::fabs(t - 1.0));
        check(worst < 1e-12, "weights sum to 1 at scale " + std::to_string(scale));
    }
}

void testUpscaleTiled() {
    const esc::Image img = pattern(61, 37);
    const auto up = [](const esc::Image& t) { return nearest(t, 3); };
    check(maxDiff(esc::upscaleTiled(img, up, 3, 16, 24, 6), nearest(img, 3)) < 1e-6f, "nearest is reproduced");
    check(maxDiff(esc::upscaleTiled(img, up, 3, 16, 16, 4, 8), nearest(img, 3)) < 1e-6f, "aligned tiles");
    int calls = 0;
    const auto counting = [&](const esc::Image& t) { ++calls; return nearest(t, 2); };
    check(esc::upscaleTiled(img, counting, 2, 64, 64, 8).data == nearest(img, 2).data && calls == 1,
          "one tile is untiled inference");
    checkThrows([&] { esc::upscaleTiled(img, up, 2, 16, 16, 4); }, "upscaler with the wrong scale");
}

void printWeights(const char* name, const std::vector<std::vector<double>>& weights) {
    std::printf(", \"%s\": [", name);
    for (size_t i = 0; i < weights.size(); ++i) {
        std::printf("%s[", i ? ", " : "");
        for (size_t j = 0; j < weights[i].size(); ++j) std::printf("%s%.17g", j ? ", " : "", weights[i][j]);
        std::printf("]");
    }
    std::printf("]");
}

int printGrid(char** argv) {
    const int h = std::stoi(argv[2]), w = std::stoi(argv[3]), th = std::stoi(argv[4]), tw = std::stoi(argv[5]);
    const int overlap = std::stoi(argv[6]), align = std::stoi(argv[7]), scale = std::stoi(argv[8]);
    const auto tiles = esc::tileGrid(h, w, th, tw, overlap, align);  // throws before anything is printed
    const auto rows = esc::axisWeights(esc::tileSpans(h, th, overlap, align), scale);
    const auto cols = esc::axisWeights(esc::tileSpans(w, tw, overlap, align), scale);
    std::printf("{\"tiles\": [");
    for (size_t i = 0; i < tiles.size(); ++i)
        std::printf("%s[%d, %d, %d, %d]", i ? ", " : "", tiles[i].y, tiles[i].x, tiles[i].height, tiles[i].width);
    std::printf("]");
    printWeights("row_weights", rows);
    printWeights("col_weights", cols);
    std::printf("}\n");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 9 && std::string(argv[1]) == "grid") {
        try {
            return printGrid(argv);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "error: %s\n", e.what());
            return 2;
        }
    }
    if (argc != 1) {
        std::fprintf(stderr, "usage: %s [grid H W TILE_H TILE_W OVERLAP ALIGN SCALE]\n", argv[0]);
        return 2;
    }
    testPpm();
    testPng();
    testToByte();
    testSpans();
    testUpscaleTiled();
    std::printf("%s (png %s)\n", failures ? "FAILED" : "all tests passed", esc::pngSupported() ? "on" : "off");
    return failures ? 1 : 0;
}
