// dcrt_host: image-to-video on a dcrt bundle without Python, a thin command line over the library
// (include/dcrt/host.h, cpp_host/README.md):
//   dcrt_host --bundle DIR --image IMAGE --prompt TEXT --seed N (--out FRAMES_DIR | --mp4 VIDEO.mp4) [options]
// Every failure is one line on stderr and exit code 2 (bad input) or 1 (a failure while running).
#include <dcrt/host.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cerrno>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace {

const char* kUsage =
    "usage: dcrt_host --bundle DIR --image IMAGE --seed N [--prompt TEXT] (--out FRAMES_DIR | --mp4 VIDEO.mp4)\n"
    "                 [--mode animate|interpolate|loop] [--last-image IMAGE (interpolate)]\n"
    "                 [--steps N] [--timestep-spacing S] [--eta E] [--guidance-scale G]\n"
    "                 [--image-guidance-scale S] [--guidance-rescale R] [--frame-stride F]\n"
    "                 [--device cpu|cuda (default: the bundle's)] [--fps N]\n"
    "IMAGE: a PNG or JPEG of any size (resized and centre-cropped as dcrt does). Sampling settings and --fps\n"
    "default to the ones the bundle's manifest records (those of `dcrt animate`).\n"
    "Writes FRAMES_DIR/000.png ... and/or an H.264 mp4 through the ffmpeg on PATH.\n";

struct Args {
  std::string bundle, image, last_image, prompt, out, mp4, device, mode = "animate";
  std::optional<uint64_t> seed;
  int fps = 0;  // 0: the bundle's
  dcrt::Sampling sampling;
};

double number(const std::string& flag, const std::string& value) {
  char* end = nullptr;
  const double v = std::strtod(value.c_str(), &end);
  if (value.empty() || *end != '\0') throw dcrt::UsageError(flag + " takes a number, got \"" + value + "\"");
  return v;
}

int whole(const std::string& flag, const std::string& value) {
  const double v = number(flag, value);
  if (v != static_cast<int>(v)) throw dcrt::UsageError(flag + " takes a whole number, got \"" + value + "\"");
  return static_cast<int>(v);
}

uint64_t seed(const std::string& value) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(value.c_str(), &end, 10);
  if (value.empty() || value[0] == '-' || *end != '\0' || errno == ERANGE)
    throw dcrt::UsageError("--seed must be an integer from 0 to 2**64 - 1, got \"" + value + "\"");
  return v;
}

Args parse(int argc, char** argv) {
  Args a;
  dcrt::Sampling& s = a.sampling;
  const std::map<std::string, std::function<void(const std::string&)>> flags = {
      {"--bundle", [&](const std::string& v) { a.bundle = v; }},
      {"--image", [&](const std::string& v) { a.image = v; }},
      {"--last-image", [&](const std::string& v) { a.last_image = v; }},
      {"--mode", [&](const std::string& v) { a.mode = v; }},
      {"--prompt", [&](const std::string& v) { a.prompt = v; }},
      {"--seed", [&](const std::string& v) { a.seed = seed(v); }},
      {"--out", [&](const std::string& v) { a.out = v; }},
      {"--mp4", [&](const std::string& v) { a.mp4 = v; }},
      {"--device", [&](const std::string& v) { a.device = v; }},
      {"--fps",
       [&](const std::string& v) {
         a.fps = whole("--fps", v);
         if (a.fps < 1) throw dcrt::UsageError("--fps must be >= 1");
       }},
      {"--steps", [&](const std::string& v) { s.steps = whole("--steps", v); }},
      {"--timestep-spacing", [&](const std::string& v) { s.timestep_spacing = v; }},
      {"--eta", [&](const std::string& v) { s.eta = number("--eta", v); }},
      {"--frame-stride", [&](const std::string& v) { s.frame_stride = whole("--frame-stride", v); }},
      {"--guidance-scale", [&](const std::string& v) { s.guidance_scale = number("--guidance-scale", v); }},
      {"--guidance-rescale", [&](const std::string& v) { s.guidance_rescale = number("--guidance-rescale", v); }},
      {"--image-guidance-scale",
       [&](const std::string& v) { s.image_guidance_scale = number("--image-guidance-scale", v); }},
  };
  for (int k = 1; k < argc; ++k) {
    const std::string flag = argv[k];
    if (flag == "-h" || flag == "--help") {
      std::cout << kUsage;
      std::exit(0);
    }
    const auto it = flags.find(flag);
    if (it == flags.end()) throw dcrt::UsageError("unknown option " + flag + " (see --help)");
    if (k + 1 >= argc) throw dcrt::UsageError(flag + " needs a value");
    it->second(argv[++k]);
  }
  for (const auto& [flag, value] : {std::pair{"--bundle", a.bundle}, std::pair{"--image", a.image}})
    if (value.empty()) throw dcrt::UsageError(std::string(flag) + " is required (see --help)");
  if (!a.seed) throw dcrt::UsageError("--seed is required (the seed `dcrt animate --seed` takes)");
  if (a.mode != "animate" && a.mode != "interpolate" && a.mode != "loop")
    throw dcrt::UsageError("--mode must be animate, interpolate or loop, got \"" + a.mode + "\"");
  if ((a.mode == "interpolate") != !a.last_image.empty())
    throw dcrt::UsageError(a.mode == "interpolate" ? "--mode interpolate needs --last-image (the last key frame)"
                                                   : "--last-image is for --mode interpolate");
  if (a.out.empty() && a.mp4.empty()) throw dcrt::UsageError("pass --out FRAMES_DIR, --mp4 VIDEO.mp4 or both");
  return a;
}

int run(int argc, char** argv) {
  const Args args = parse(argc, argv);
  const auto start = std::chrono::steady_clock::now();
  const dcrt::Image image = dcrt::read_image(args.image);
  const dcrt::Image last = args.last_image.empty() ? dcrt::Image{} : dcrt::read_image(args.last_image);
  const std::unique_ptr<dcrt::Engine> engine = dcrt::Engine::open(args.bundle, args.device);
  if (!args.mp4.empty() && args.fps == 0 && engine->fps(args.mode) == 0)  // asked before the work
    throw dcrt::UsageError(args.bundle + "/manifest.json records no fps: pass --fps (`dcrt build` again records it)");
  const dcrt::Video video =
      args.mode == "interpolate" ? engine->interpolate(image, last, args.prompt, *args.seed, args.sampling)
      : args.mode == "loop"      ? engine->loop(image, args.prompt, *args.seed, args.sampling)
                                 : engine->animate(image, args.prompt, *args.seed, args.sampling);
  if (!args.out.empty()) dcrt::write_frames(video, args.out);
  if (!args.mp4.empty() && !dcrt::write_mp4(video, args.mp4, args.fps))
    std::fprintf(stderr, "dcrt_host: no ffmpeg on PATH: did not write %s\n", args.mp4.c_str());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(stderr, "dcrt_host: %d frames of %dx%d from %s in %.1f s -> %s\n", video.frames, video.width,
               video.height, engine->describe().c_str(), seconds, (args.out.empty() ? args.mp4 : args.out).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const dcrt::UsageError& e) {
    std::fprintf(stderr, "dcrt_host: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dcrt_host: failed: %s\n", e.what());
    return 1;
  }
}
